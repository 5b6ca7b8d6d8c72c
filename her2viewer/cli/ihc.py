"""Verb ``ihc``: rule-based HER2 IHC score, seed 003's stain-intensity baseline and MIL.

The MIL verbs import torch only when they run, so that the other verbs start fast.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import numpy as np

from her2viewer.analysis.ihc import (
    CATEGORIES,
    GUIDELINES,
    NOT_EVALUABLE,
    NOT_TUMOR,
    IhcOptions,
    IhcRules,
    NotEvaluableError,
    analyse_ihc,
)
from her2viewer.analysis.ihc_baseline import (
    StainIntensityBaseline,
    cohort_descriptors,
    max_tile_dab,
    read_labels,
)
from her2viewer.annotations.roi import region_text
from her2viewer.cli.options import (
    add_device_option,
    add_json_option,
    add_output_option,
    add_roi_options,
    roi_region,
)
from her2viewer.outputs import check_output_file, prepare_output_dir
from her2viewer.overlay.export import write_image
from her2viewer.slide import open_slide

#: Colours of the category map PNG (RGB), per category; not-tumor is white.
CATEGORY_COLOURS = np.array(
    [[70, 110, 200], [250, 220, 80], [245, 140, 40], [200, 30, 30]], np.uint8
)


def register(subparsers) -> None:
    """Add the ``ihc`` verb and its sub-verbs."""
    ihc = subparsers.add_parser("ihc", help="HER2 IHC: rule-based score, stain baseline")
    verbs = ihc.add_subparsers(dest="ihc_verb", metavar="ACTION")
    verbs.required = True
    score = verbs.add_parser(
        "score",
        help="score a HER2 IHC slide or image (ASCO/CAP rules)",
        description="Score a HER2 IHC slide by the guideline rules. A slide without tissue "
        "or without tumor-cell regions is 'not evaluable' (JSON status not_evaluable, with "
        "the reason), never negative.",
    )
    score.add_argument("slide", help="IHC slide or plain image (PNG/JPEG/TIFF)")
    score.add_argument("--guideline", choices=GUIDELINES, default="breast")
    add_json_option(score, "the score")
    score.add_argument("--map", help="write the category map as a PNG")
    score.add_argument(
        "--estimate-stains",
        action="store_true",
        help="estimate the hematoxylin vector on the slide (Macenko) instead of the reference",
    )
    add_roi_options(score)
    score.set_defaults(func=run_score)
    train = verbs.add_parser("train-baseline", help="fit seed 003's stain-intensity baseline")
    train.add_argument("labels", help="cohort CSV with ihc_path, ihc_score, her2_status")
    add_output_option(train, "model JSON to write", required=True)
    train.set_defaults(func=run_train_baseline)
    predict = verbs.add_parser("predict-baseline", help="apply the stain-intensity baseline")
    predict.add_argument("model", help="model JSON from train-baseline")
    predict.add_argument("slide", help="IHC slide or image")
    predict.set_defaults(func=run_predict_baseline)
    train_mil = verbs.add_parser("train-mil", help="train seed 003's attention MIL on IHC")
    train_mil.add_argument("labels", help="cohort CSV with ihc_path, ihc_score, her2_status")
    add_output_option(train_mil, "bundle folder or .zip to write", required=True)
    train_mil.add_argument("--features-dir", required=True, help="tile features cache folder")
    weights = train_mil.add_mutually_exclusive_group()
    weights.add_argument("--encoder-weights", help="torchvision ResNet-34 weights file")
    weights.add_argument(
        "--random-weights", type=int, metavar="SEED", help="random encoder (tests/demos only)"
    )
    train_mil.add_argument("--epochs", type=int, default=40)
    add_device_option(train_mil)
    train_mil.set_defaults(func=run_train_mil)
    predict_mil = verbs.add_parser("predict-mil", help="apply an attention-MIL bundle")
    predict_mil.add_argument("bundle", help="bundle from train-mil")
    predict_mil.add_argument("slide", help="IHC slide or image")
    predict_mil.add_argument("--features", help="features .h5 to reuse or write")
    predict_mil.add_argument("--heatmap", help="write the attention heatmap as a PNG")
    add_device_option(predict_mil)
    predict_mil.set_defaults(func=run_predict_mil)


def _category_png(category_map: np.ndarray) -> np.ndarray:
    rgb = np.full(category_map.shape + (3,), 255, np.uint8)
    tumor = category_map != NOT_TUMOR
    rgb[tumor] = CATEGORY_COLOURS[category_map[tumor]]
    return rgb


def _check_png_output(path: str | None) -> None:
    """Check an optional PNG output before the analysis runs."""
    if path is not None:
        check_output_file(path)


def run_score(args) -> int:
    """Print the rule-based score of one IHC slide or image ("not evaluable" without tumor)."""
    _check_png_output(args.map)
    region = roi_region(args)
    with open_slide(args.slide) as slide:
        rules = IhcRules.for_guideline(args.guideline)
        options = IhcOptions(rules, estimate_stains=args.estimate_stains, region=region)
        result = analyse_ihc(slide, None, options)
    if args.map:
        write_image(args.map, _category_png(result.category_map), ".png")
    if args.json:
        print(json.dumps(result.summary(), indent=2))
        return 0
    if region is not None:
        print(f"Region: {region_text(result.summary())}")
    if not result.evaluable:
        print(f"HER2 IHC {result.label} ({result.guideline}): {result.reason}.")
        return 0
    print(f"HER2 IHC score {result.label} ({result.guideline}): {result.recommendation}")
    for name in CATEGORIES:
        print(f"  {name:24s} {result.percentages[name]:5.1f} % of tumor-cell regions")
    dab = result.dab
    print(
        f"  DAB mean OD {dab.mean_od:.3f}, positive {100 * dab.positive_fraction:.1f} % "
        f"of tissue pixels, H-score {dab.h_score:.0f}"
    )
    return 0


def run_train_baseline(args) -> int:
    """Fit the two logistic regressions on a cohort and save them."""
    check_output_file(args.out)
    rows = read_labels(args.labels)
    descriptors = cohort_descriptors(rows)
    model = StainIntensityBaseline.fit(
        descriptors, [int(r["ihc_score"]) for r in rows], [r["her2_status"] for r in rows]
    )
    print(f"trained on {len(rows)} slides; model: {model.save(args.out)}", file=sys.stderr)
    return 0


def run_predict_baseline(args) -> int:
    """Print the baseline's IHC score and status for one slide."""
    model = StainIntensityBaseline.load(args.model)
    with open_slide(args.slide) as slide:
        try:
            descriptor = max_tile_dab(slide)
        except NotEvaluableError as exc:
            return _print_not_evaluable(exc)
    scores, statuses = model.predict([descriptor])
    print(
        json.dumps(
            {
                "ihc_score": int(scores[0]),
                "her2_status": str(statuses[0]),
                "max_tile_dab": descriptor,
            }
        )
    )
    return 0


def _print_not_evaluable(exc: NotEvaluableError) -> int:
    """Print the JSON of a slide with nothing to score: no score, no status, the reason."""
    print(
        json.dumps(
            {"status": NOT_EVALUABLE, "reason": str(exc), "ihc_score": None, "her2_status": None}
        )
    )
    return 0


def run_train_mil(args) -> int:
    """Extract (or reuse) tile features for a cohort and train the attention MIL."""
    from her2viewer.analysis.ihc_mil import (
        resnet34_encoder,
        save_mil,
        slide_features,
        train_ihc_mil,
    )

    rows = read_labels(args.labels)
    encoder = resnet34_encoder(args.encoder_weights, args.random_weights)
    features_dir = prepare_output_dir(args.features_dir)
    bags = []
    for row in rows:
        with open_slide(row["ihc_path"]) as slide:
            name = Path(row["ihc_path"]).parent.name + "_" + Path(row["ihc_path"]).stem
            bags.append(slide_features(slide, encoder, features_dir / f"{name}.h5", args.device))
    model = train_ihc_mil(
        [b.features for b in bags],
        [int(r["ihc_score"]) for r in rows],
        [r["her2_status"] for r in rows],
        epochs=args.epochs,
    )
    out = save_mil(args.out, model, encoder, {"labels": str(args.labels), "slides": len(rows)})
    print(f"trained on {len(rows)} slides; bundle: {out}", file=sys.stderr)
    return 0


def run_predict_mil(args) -> int:
    """Print the MIL's IHC score and status for one slide (and its attention heatmap)."""
    from her2viewer.analysis.ihc_mil import attention_map, load_mil, predict_mil, slide_features

    _check_png_output(args.heatmap)
    model, encoder = load_mil(args.bundle)
    with tempfile.TemporaryDirectory() as tmp, open_slide(args.slide) as slide:
        try:
            features = slide_features(
                slide, encoder, args.features or Path(tmp) / "features.h5", args.device
            )
        except NotEvaluableError as exc:
            return _print_not_evaluable(exc)
        prediction = predict_mil(model, features.features, Path(args.slide).name)
        if args.heatmap:
            tile0 = int(features.attrs.get("patch_size_level0", 224))
            heat, _ = attention_map(
                features.coords, prediction.attention, tile0, slide.info.width, slide.info.height
            )
            image = np.where(np.isnan(heat), 0, 55 + 200 * np.nan_to_num(heat)).astype(np.uint8)
            write_image(args.heatmap, image, ".png")
    print(
        json.dumps(
            {
                "ihc_score": prediction.score,
                "her2_status": prediction.status,
                "score_probs": prediction.score_probs.round(4).tolist(),
                "status_probs": prediction.status_probs.round(4).tolist(),
                "n_tiles": len(prediction.attention),
            }
        )
    )
    return 0
