"""Verbs ``grade train|predict|gradcam``: HER2 IHC patch grading (seed 004).

The method is that of "Deep Learning Based Automated HER2 Score Prediction Using
Immunohistochemistry Histopathological Images: A Dual-Center Study" (preprint). ``patchcnn``
is the verb's old, deprecated spelling, still accepted.

:func:`train_cohort` is the training pipeline behind ``grade train`` and the demo
bundle's script: tumor-enriched patches of a cohort's IHC slides
(:func:`~her2viewer.models.patch_data.slide_patches`), a patient-level
train/validation/test split, then either a trained grade head on a backbone with
fixed seeded random weights (``linear-head``: features of the frozen network, a
logistic regression chosen on the validation patients, folded into the network's
last layer) or the whole network trained (``full``, for a GPU). Held-out metrics go
into the bundle.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from her2viewer.analysis.patch_grading import gradcam_slide, grade_slide
from her2viewer.devices import choose_device
from her2viewer.errors import ModelError, StainError
from her2viewer.models.checks import add_mpp_option, with_notice
from her2viewer.models.patch_cnn import (
    ARCHITECTURES,
    augment,
    build_patch_cnn,
    fit_linear_head,
    head_inputs,
    head_layer,
    input_transform,
    predict_proba,
    save_patch_cnn,
    seeded_backbone,
    slide_grade,
    train_patch_cnn,
)
from her2viewer.models.patch_data import (
    SCORE_NAMES,
    TUMOR_RULES,
    grading_metrics,
    read_cohort,
    slide_patches,
)
from her2viewer.outputs import atomic_output, check_output_file
from her2viewer.stain import MacenkoNormalizer
from her2viewer.stats.splits import patient_split
from her2viewer.tissue.patching import MAX_BACKGROUND

RECIPES = ("linear-head", "full")
#: Inverse L2 strengths tried for the grade head; the validation patients choose.
HEAD_C_GRID = (0.01, 0.1, 1.0)
AGGREGATION = "mean patch probability, argmax"


def _common(parser) -> None:
    parser.add_argument("--limit", type=int, default=None, help="at most N patches per slide")
    parser.add_argument(
        "--tumor",
        default="auto",
        choices=TUMOR_RULES,
        help="patch choice: tumor mask when there is one, else stain density (auto)",
    )
    parser.add_argument("--device", default="auto", help="auto, cuda, mps or cpu")
    parser.add_argument("--json", action="store_true", help="print JSON")


def _model_option(parser) -> None:
    parser.add_argument(
        "--model", default=None, help="bundle, or weights file with --arch (default: demo bundle)"
    )
    parser.add_argument("--arch", default=None, choices=ARCHITECTURES)
    add_mpp_option(parser)


def register(subparsers) -> None:
    """Add the ``grade`` verb (deprecated alias ``patchcnn``) with train, predict and gradcam."""
    verb = subparsers.add_parser(
        "grade",
        aliases=["patchcnn"],
        help="HER2 IHC 1+/2+/3+ grading CNNs and Grad-CAM ('patchcnn' is deprecated)",
        description="HER2 IHC patch grading (1+/2+/3+) with the CNNs of 'Deep Learning Based "
        "Automated HER2 Score Prediction Using Immunohistochemistry Histopathological Images: "
        "A Dual-Center Study'. 'her2viewer patchcnn' is the deprecated spelling of this verb "
        "and will be removed in a later release.",
    )
    sub = verb.add_subparsers(dest="action", metavar="ACTION")
    sub.required = True
    train = sub.add_parser("train", help="train on a cohort labels.csv with patient-level splits")
    train.add_argument("labels", help="labels.csv (case_id, ihc_path, ihc_score, patient_id)")
    train.add_argument("--out", required=True, help="bundle folder or .zip to write")
    train.add_argument("--arch", default="resnet34", choices=ARCHITECTURES)
    train.add_argument("--recipe", default="linear-head", choices=RECIPES)
    train.add_argument("--scores", default="1,2,3", help="IHC scores to grade (default 1,2,3)")
    train.add_argument(
        "--input-size", type=int, default=128, help="resize 512 px patches to this for the CNN"
    )
    train.add_argument("--step", type=int, default=None, help="grid step (px at 20x)")
    train.add_argument("--epochs", type=int, default=5, help="full recipe only")
    train.add_argument("--batch-size", type=int, default=16)
    train.add_argument("--lr", type=float, default=1e-3, help="full recipe only")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--no-macenko", action="store_true", help="skip stain normalisation")
    _common(train)
    train.set_defaults(func=run_train)
    predict = sub.add_parser("predict", help="grade a slide: per-patch and slide-level grade")
    predict.add_argument("slide")
    _model_option(predict)
    predict.add_argument("--out", default=None, help="JSON of per-patch grades (coords, probs)")
    _common(predict)
    predict.set_defaults(func=run_predict)
    cam = sub.add_parser("gradcam", help="Grad-CAM score map of a slide (level-0 aligned)")
    cam.add_argument("slide")
    _model_option(cam)
    cam.add_argument("--out", required=True, help=".npy score map (NaN outside patches)")
    cam.add_argument("--grade", default=None, help="class to explain (default: predicted)")
    cam.add_argument("--downsample", type=float, default=16.0, help="level-0 px per map px")
    cam.add_argument("--rect", default=None, help="only level-0 region X0,Y0,X1,Y1")
    _common(cam)
    cam.set_defaults(func=run_gradcam)


def _emit(summary: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(summary, indent=2, default=float))
    else:
        for key, value in summary.items():
            print(f"{key}: {value}")


def _gather(cases, score_index, limit, seed, tumor, step):
    xs, ys, groups = [], [], []
    for case in cases:
        patches = slide_patches(case.path, limit=limit, seed=seed, tumor=tumor, step=step).patches
        xs.append(patches)
        ys += [score_index[case.score]] * len(patches)
        groups += [case.case_id] * len(patches)
    return np.concatenate(xs), np.array(ys), np.array(groups)


def _fit_normalizer(patches: np.ndarray) -> dict | None:
    """Reference stains from four training patches; DAB amounts are kept (keep_dab)."""
    mosaic = np.concatenate(list(patches[:4]), axis=1)
    try:
        return MacenkoNormalizer.fit(mosaic).to_dict() | {"keep_dab": True}
    except StainError:
        return None


def _metrics(probs, y, groups, classes) -> dict:
    slides = sorted(set(groups))
    slide_probs = np.stack([slide_grade(probs[groups == g])[1] for g in slides])
    slide_truth = [int(y[groups == g][0]) for g in slides]
    return {
        "patch": asdict(grading_metrics(y, probs, classes)),
        "slide": asdict(grading_metrics(slide_truth, slide_probs, classes)),
        "slides": slides,
    }


@torch.no_grad()
def _head_probs(model, arch, features) -> np.ndarray:
    logits = head_layer(model, arch)(torch.as_tensor(features, dtype=torch.float32))
    return torch.softmax(logits, 1).numpy()


def _train_linear_head(model, arch, data, transform, seed, device, log) -> tuple[dict, dict]:
    """Grade head on frozen features (+ one augmented training view), C chosen on validation."""
    x_train, y_train, _ = data["train"]
    features = {
        n: head_inputs(model, arch, transform(x), device=device) for n, (x, _, _) in data.items()
    }
    view = augment(transform(x_train), torch.Generator().manual_seed(seed))
    train_x = np.concatenate([features["train"], head_inputs(model, arch, view, device=device)])
    train_y = np.concatenate([y_train, y_train])
    scores = {}
    for c in HEAD_C_GRID:
        fit_linear_head(model, arch, train_x, train_y, c)
        _, y_val, _ = data["validation"]
        probs = _head_probs(model, arch, features["validation"])
        scores[c] = grading_metrics(y_val, probs, list(range(probs.shape[1]))).macro_auc
        log(f"head C={c}: validation patch macro-AUC {scores[c]:.3f}")
    best = max(HEAD_C_GRID, key=lambda c: np.nan_to_num(scores[c], nan=-1.0))
    fit_linear_head(model, arch, train_x, train_y, best)
    head = {
        "kind": "logistic regression on frozen features",
        "C": best,
        "validation_macro_auc_per_C": {str(c): v for c, v in scores.items()},
        "augmentation": "one flipped/rotated/jittered view of every training patch",
    }
    probs = {n: _head_probs(model, arch, features[n]) for n in ("validation", "test")}
    return head, probs


def train_cohort(
    labels: str | Path,
    out: str | Path,
    arch: str = "resnet34",
    scores: tuple[int, ...] = (1, 2, 3),
    recipe: str = "linear-head",
    input_size: int = 128,
    seed: int = 0,
    limit: int | None = None,
    step: int | None = None,
    tumor: str = "auto",
    macenko: bool = True,
    epochs: int = 5,
    batch_size: int = 16,
    lr: float = 1e-3,
    device: str = "auto",
    log=lambda message: None,
    extra: dict | None = None,
) -> dict:
    """Train a patch-grading CNN on a cohort and write its bundle with held-out metrics.

    Parameters
    ----------
    labels : path
        Cohort ``labels.csv``.
    out : path
        Bundle folder or ``.zip``.
    arch, scores, recipe, input_size, seed
        Backbone, IHC scores graded, ``linear-head`` or ``full``, CNN input side,
        seed (split, backbone weights, augmentation).
    limit, step, tumor
        Patches per slide, grid step (px at 20x; overlapping patches give small
        slides more of them) and the tumor rule of
        :func:`~her2viewer.models.patch_data.slide_patches`.
    macenko : bool
        Macenko-normalise patches (DAB amounts kept).
    epochs, batch_size, lr
        Full recipe only.
    device : str
    log : callable
        Receives progress lines.
    extra : dict, optional
        More metadata for ``bundle.json`` (notes, provenance).

    Returns
    -------
    dict
        The bundle's metadata (``metrics`` holds validation and test figures).
    """
    if recipe not in RECIPES:
        raise ModelError(f"Unknown recipe '{recipe}'; choose from {', '.join(RECIPES)}.")
    classes = [SCORE_NAMES[s] for s in scores]
    cases = [c for c in read_cohort(labels) if c.score in scores]
    parts = patient_split([c.score for c in cases], [c.patient_id for c in cases], seed=seed)
    split = {name: [cases[i] for i in index] for name, index in parts.items()}
    index = {s: k for k, s in enumerate(scores)}
    data = {name: _gather(group, index, limit, seed, tumor, step) for name, group in split.items()}
    log(", ".join(f"{n}: {len(d[1])} patches of {len(split[n])} slides" for n, d in data.items()))
    torch_device = choose_device(device)
    meta = {
        "arch": arch,
        "classes": classes,
        "input_size": input_size,
        "max_background": MAX_BACKGROUND,
        "tumor_rule": tumor,
        "aggregation": AGGREGATION,
        "normalizer": _fit_normalizer(data["train"][0]) if macenko else None,
    }
    transform = input_transform(meta)
    if recipe == "linear-head":
        model, meta["backbone"] = seeded_backbone(arch, seed, len(classes))
        meta["head"], probs = _train_linear_head(
            model, arch, data, transform, seed, torch_device, log
        )
    else:
        model = build_patch_cnn(arch, len(classes), seed=seed)
        x, y, _ = data["train"]
        result = train_patch_cnn(model, transform(x), y, epochs, batch_size, lr, seed, torch_device)
        meta["train_losses"] = result.losses
        probs = {
            n: predict_proba(model, transform(data[n][0]), device=torch_device)
            for n in ("validation", "test")
        }
    meta["metrics"] = {n: _metrics(probs[n], *data[n][1:], classes) for n in probs}
    meta["provenance"] = {
        "labels": Path(labels).name,
        "recipe": recipe,
        "seed": seed,
        "grid_step": step,
        "patches": {n: int(len(d[1])) for n, d in data.items()},
        "split_patients": {k: sorted({c.patient_id for c in v}) for k, v in split.items()},
    }
    meta |= extra or {}
    save_patch_cnn(out, model.cpu(), meta)
    return meta


def run_train(args) -> int:
    """Train a patch CNN and write a bundle with its held-out metrics."""
    meta = train_cohort(
        args.labels, args.out, args.arch, tuple(int(s) for s in args.scores.split(",")),
        args.recipe, args.input_size, args.seed, args.limit, args.step, args.tumor,
        not args.no_macenko, args.epochs, args.batch_size, args.lr, args.device,
    )  # fmt: skip
    test = meta["metrics"]["test"]
    _emit(
        {
            "bundle": str(args.out),
            "patches": meta["provenance"]["patches"],
            "test_patch_macro_auc": test["patch"]["macro_auc"],
            "test_patch_accuracy": test["patch"]["accuracy"],
            "test_slide_accuracy": test["slide"]["accuracy"],
            "test_patch_confusion": test["patch"]["confusion"],
        },
        args.json,
    )
    return 0


def run_predict(args) -> int:
    """Grade a slide with a trained patch CNN (the demo bundle by default).

    A demo bundle's notice is on the grade line (text) or in ``notice`` (JSON); a slide
    outside what the bundle accepts gets a one-sentence warning on stderr.
    """
    if args.out:
        check_output_file(args.out)
    result = grade_slide(
        args.slide, args.model, args.arch, args.limit, args.device, tumor=args.tumor,
        mpp=args.mpp,
    )  # fmt: skip
    if result.warning:
        print(result.warning, file=sys.stderr)
    classes = result.classes
    if args.out:
        result.save(args.out)
    counts = np.bincount(result.probs.argmax(1), minlength=len(classes))
    summary = {
        "slide": str(args.slide),
        "grade": result.grade if args.json else with_notice(result.grade, result.notice),
        "patches": len(result.probs),
        "patch_choice": result.rule,
        "mean_probability": dict(
            zip(classes, np.round(result.mean_probability, 4).tolist(), strict=True)
        ),
        "patch_grades": dict(zip(classes, counts.tolist(), strict=True)),
    }
    if args.json:
        summary |= {"notice": result.notice, "warning": result.warning}
    _emit(summary, args.json)
    return 0


def _rect(text: str | None) -> tuple[float, float, float, float] | None:
    if text is None:
        return None
    try:
        x0, y0, x1, y1 = (float(v) for v in text.split(","))
    except ValueError as exc:
        raise ModelError(f"--rect must look like 0,0,4096,4096, got {text!r}.") from exc
    return x0, y0, x1, y1


def run_gradcam(args) -> int:
    """Write a slide-level Grad-CAM score map (``.npy``, level-0 aligned)."""
    check_output_file(args.out)
    result = gradcam_slide(
        args.slide, args.model, args.grade, args.arch, args.limit, args.downsample, args.device,
        tumor=args.tumor, rect=_rect(args.rect), mpp=args.mpp,
    )  # fmt: skip
    with atomic_output(args.out) as tmp, open(tmp, "wb") as handle:
        np.save(handle, result.values)
    summary = {
        "slide": str(args.slide),
        "out": str(args.out),
        "downsample": result.downsample,
        "shape": list(result.values.shape),
        "patches": len(result.patch_probs),
    }
    _emit(summary, args.json)
    return 0
