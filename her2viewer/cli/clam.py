"""The ``clam`` verb: ``infer`` on a features file, ``heatmap`` on a slide, ``train`` (k-fold)."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

import numpy as np

from her2viewer.argtypes import bounded
from her2viewer.cli.options import (
    EPOCHS,
    LEARNING_RATE,
    SEED,
    add_batching_options,
    add_device_option,
    add_json_option,
    add_output_option,
    add_patch_grid_options,
    add_progress_options,
    add_roi_options,
    add_threads_option,
    apply_threads,
    roi_region,
)
from her2viewer.cli.progress import Reporter, progress_reporter
from her2viewer.errors import ModelError
from her2viewer.outputs import check_output_file, write_text_atomic
from her2viewer.overlay.colormaps import COLORMAPS
from her2viewer.overlay.export import IMAGE_SUFFIXES
from her2viewer.training.clam_config import ClamTrainConfig

# torch-heavy modules are imported inside the run_* functions, so that building the
# command line (every verb's start-up) does not load torch.

TOP_K = 5
#: Largest --overlap: beyond it the patch step shrinks towards one pixel (a hang).
MAX_OVERLAP = 0.9
#: CLAM's create_heatmaps.py draws attention with a diverging map.
CLAM_COLORMAP = "coolwarm"
#: Parse-time checks of ``clam train``'s numeric hyper-parameters (the string ones are
#: checked when the model is built).
TRAIN_TYPES = {
    "dropout": bounded(float, 0.0, 1.0, high_open=True),
    "lr": LEARNING_RATE,
    "weight_decay": bounded(float, 0.0, 1.0),
    "bag_weight": bounded(float, 0.0, 1.0),
    "k_sample": bounded(int, 1, 4096),
    "max_epochs": EPOCHS,
    "patience": EPOCHS,
    "min_epochs": bounded(int, 0, 100_000),
    "seed": SEED,
}


def register(subparsers) -> None:
    """Add ``clam infer``, ``clam heatmap`` and ``clam train``."""
    clam = subparsers.add_parser("clam", help="CLAM attention MIL: infer and train")
    verbs = clam.add_subparsers(dest="clam_verb", metavar="ACTION")
    verbs.required = True

    infer = verbs.add_parser("infer", help="slide prediction + per-patch attention")
    infer.add_argument("--model", required=True, help="CLAM bundle (folder/zip) or checkpoint")
    infer.add_argument("--features", required=True, help="features .h5 (or CLAM .pt)")
    add_json_option(infer, "the prediction with all attention")
    infer.set_defaults(func=run_infer)

    heat = verbs.add_parser("heatmap", help="slide -> prediction + attention heatmap PNG")
    heat.add_argument("slide")
    heat.add_argument("--model", required=True, help="CLAM bundle (or checkpoint + --encoder)")
    add_output_option(heat, "PNG to write (plus .json summary)", required=True)
    heat.add_argument(
        "--level", type=bounded(int, 0, 64), help="pyramid level of the PNG (default: smallest)"
    )
    heat.add_argument(
        "--overlap",
        type=bounded(float, 0.0, MAX_OVERLAP),
        default=0.0,
        help=f"patch overlap, 0 to {MAX_OVERLAP} (CLAM uses 0 or 0.5)",
    )
    heat.add_argument("--blur", action="store_true", help="Gaussian blur as CLAM")
    heat.add_argument(
        "--binarize",
        type=bounded(float, 0.0, 1.0),
        metavar="T",
        help="percentile scores >= T (0 to 1) -> 1, else 0",
    )
    heat.add_argument(
        "--colormap", choices=sorted(COLORMAPS), default=CLAM_COLORMAP, help="default: coolwarm"
    )
    heat.add_argument(
        "--alpha", type=bounded(float, 0.0, 1.0), default=0.5, help="heatmap opacity (0.5)"
    )
    heat.add_argument("--tiff", help="also write the coloured overlay as a pyramidal RGBA TIFF")
    add_patch_grid_options(heat)
    add_device_option(heat)
    add_batching_options(heat)
    heat.add_argument("--encoder", help="encoder for a plain checkpoint (default: the bundle's)")
    heat.add_argument("--encoder-weights", help="weights file for --encoder")
    add_roi_options(heat)
    add_progress_options(heat)
    heat.set_defaults(func=run_heatmap)

    train = verbs.add_parser(
        "train", help="k-fold CLAM training (the recipe of Lu et al., Nat Biomed Eng 2021)"
    )
    train.add_argument("--features-dir", required=True, help="folder from `her2viewer extract`")
    train.add_argument("--labels", required=True, help="CSV: slide_id/case_id, label/her2_status")
    add_output_option(train, "output folder (fold_<k>/ bundles)", required=True)
    train.add_argument("--label-column", help="label column (default label or her2_status)")
    train.add_argument("--classes", help="comma-separated class order (default: sorted labels)")
    train.add_argument("--folds", type=bounded(int, 3, 100), default=5, help="(default 5)")
    train.add_argument("--no-gate", action="store_true", help="ungated attention")
    train.add_argument(
        "--subtyping", action="store_true", help="instance loss on out-of-class branches too"
    )
    train.add_argument(
        "--standardize", action="store_true", help="z-score features (stored in the model)"
    )
    add_threads_option(train)
    add_progress_options(train)
    defaults = ClamTrainConfig()
    for item in fields(ClamTrainConfig):
        if item.type in ("bool", bool):
            continue
        flag = "--" + item.name.replace("_", "-")
        value = getattr(defaults, item.name)
        kind = TRAIN_TYPES.get(item.name, str)
        train.add_argument(flag, type=kind, default=value, help=f"(default {value})")
    train.set_defaults(func=run_train)


def run_infer(args) -> int:
    """Print the class probabilities, prediction and per-patch raw attention."""
    from her2viewer.features.encoders import check_same_encoder
    from her2viewer.features.store import read_features
    from her2viewer.models.checks import demo_notice, with_notice
    from her2viewer.models.clam import load_clam, predict

    model, meta = load_clam(args.model)
    feats = read_features(args.features)
    check_same_encoder(meta.get("encoder"), feats.encoder, f"Features file {args.features}")
    result = predict(model, feats.features, f"Features file {args.features}")
    names = meta.get("class_names") or [str(i) for i in range(len(result.probabilities))]
    if args.json:
        out = {
            "probabilities": [float(p) for p in result.probabilities],
            "prediction": result.prediction,
            "class_names": names,
            "notice": demo_notice(meta),
            "attention": result.attention.tolist(),
        }
        print(json.dumps(out))
        return 0
    for name, prob in zip(names, result.probabilities, strict=True):
        print(f"P({name}) = {prob:.4f}")
    prediction = f"prediction: {names[result.prediction]} ({result.prediction})"
    print(with_notice(prediction, demo_notice(meta)))
    branch = result.branch_attention()
    top = np.argsort(branch)[::-1][:TOP_K]
    print(f"attention over {len(branch)} patches; highest:")
    for i in top:
        where = f" at {tuple(int(v) for v in feats.coords[i])}" if feats.coords is not None else ""
        print(f"  patch {i}{where}: {branch[i]:.4f}")
    return 0


def run_heatmap(args) -> int:
    """Analyse one slide with CLAM and write the attention heatmap over the slide as PNG."""
    from her2viewer.analysis.clam import ClamOptions, analyse_clam
    from her2viewer.features.encoders import build_encoder
    from her2viewer.overlay.export import blend_layer, write_image, write_overlay_tiff
    from her2viewer.overlay.layers import HeatmapLayer
    from her2viewer.slide import open_slide

    options = ClamOptions(
        magnification=args.mag,
        patch_size=args.patch_size,
        overlap=args.overlap,
        blur=args.blur,
        binarize_threshold=args.binarize,
        device=args.device,
        batch_size=args.batch_size,
        workers=args.workers,
        region=roi_region(args),
    )
    out, summary_path = _heatmap_outputs(args)
    encoder = build_encoder(args.encoder, weights=args.encoder_weights) if args.encoder else None
    with open_slide(args.slide) as slide:
        level = len(slide.info.levels) - 1 if args.level is None else args.level
        if not 0 <= level < len(slide.info.levels):
            raise ModelError(
                f"Level {level} does not exist; the slide has {len(slide.info.levels)} levels."
            )
        with progress_reporter(args, "clam heatmap", "patches") as progress:
            result = analyse_clam(slide, args.model, options, progress.context(), encoder=encoder)
        info = slide.info.levels[level]
        base = slide.level_image(level)
    layer = HeatmapLayer(
        "attention", values=result.values, downsample=result.downsample, colormap=args.colormap
    )
    write_image(out, blend_layer(base, layer, info.downsample, args.alpha))
    summary = {"slide": str(args.slide)} | result.summary()
    summary |= {
        "top_patches": result.top_patches(8).tolist(),
        "png": str(out),
        "tiff": str(args.tiff) if args.tiff else None,
        "level": level,
    }
    if args.tiff:
        size = (slide.info.width, slide.info.height)
        write_overlay_tiff(args.tiff, layer, size, result.downsample, slide.info.mpp_x)
    write_text_atomic(summary_path, json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))
    return 0


def _heatmap_outputs(args) -> tuple[Path, Path]:
    """Check, before the analysis runs, that the PNG, its JSON and any TIFF can be written.

    Returns
    -------
    (Path, Path)
        The heatmap image and its JSON summary.
    """
    out = Path(args.out)
    if out.suffix.lower() not in IMAGE_SUFFIXES:
        raise ModelError(
            f"Cannot write the heatmap as {out.name}; name it with one of "
            f"{', '.join(IMAGE_SUFFIXES)}."
        )
    for path in (out, out.with_suffix(".json"), *([args.tiff] if args.tiff else [])):
        check_output_file(path)
    return out, out.with_suffix(".json")


def run_train(args) -> int:
    """Cross-validate CLAM and write one bundle per fold plus ``summary.json``."""
    from her2viewer.training.clam_train import cross_validate
    from her2viewer.training.datasets import load_cohort

    apply_threads(args.threads)
    classes = args.classes.split(",") if args.classes else None
    cohort = load_cohort(args.features_dir, args.labels, args.label_column, classes)
    values = {f.name: getattr(args, f.name) for f in fields(ClamTrainConfig) if f.name != "gated"}
    config = ClamTrainConfig(gated=not args.no_gate, **values)
    with progress_reporter(args, "clam train", "epochs") as progress:
        summary = cross_validate(
            cohort,
            args.out,
            config,
            args.folds,
            on_epoch=_epoch_reporter(progress, config.max_epochs, args.folds),
            provenance={"features_dir": str(args.features_dir), "labels": Path(args.labels).name},
        )
    pooled = summary["pooled_test"]
    auc = pooled.get("auc", {}).get("value", float("nan"))
    print(
        f"pooled test over {pooled['n']} slides: AUC {auc:.3f}, "
        f"accuracy {pooled['accuracy']:.3f} -> {Path(args.out) / 'summary.json'}"
    )
    return 0


def _epoch_reporter(progress: Reporter, max_epochs: int, folds: int):
    """Return an ``on_epoch`` callback reporting each fold's epochs (at most ``max_epochs``)."""

    def on_epoch(record: dict) -> None:
        fold = record["fold"]
        stage = f"clam train fold_{fold} ({fold + 1}/{folds})"
        if stage != progress.description:
            progress.stage(stage)
        progress(
            record["epoch"] + 1,
            max_epochs,
            f"train loss {record['train_loss']:.4f}, val loss {record['val_loss']:.4f}, "
            f"val AUC {record['val_auc']:.3f}",
        )

    return on_epoch
