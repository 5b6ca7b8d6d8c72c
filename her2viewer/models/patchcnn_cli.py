"""Verbs ``patchcnn train|predict|gradcam`` (alias ``grade``): IHC patch grading, seed 004."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np

from her2viewer.analysis.patch_grading import gradcam_slide, grade_slide
from her2viewer.devices import choose_device
from her2viewer.errors import ModelError, StainError
from her2viewer.models.patch_cnn import (
    ARCHITECTURES,
    MAX_BACKGROUND,
    PATCH_SIZE,
    build_patch_cnn,
    input_transform,
    predict_proba,
    save_patch_cnn,
    slide_grade,
    train_patch_cnn,
)
from her2viewer.models.patch_data import (
    SCORE_NAMES,
    grading_metrics,
    patient_split,
    read_cohort,
    slide_patches,
)
from her2viewer.stain import MacenkoNormalizer


def _common(parser) -> None:
    parser.add_argument("--limit", type=int, default=None, help="at most N patches per slide")
    parser.add_argument("--device", default="auto", help="auto, cuda, mps or cpu")
    parser.add_argument("--json", action="store_true", help="print JSON")


def register(subparsers) -> None:
    """Add the ``patchcnn`` verb (alias ``grade``) with train, predict and gradcam."""
    verb = subparsers.add_parser(
        "patchcnn", aliases=["grade"], help="HER2 IHC patch-grading CNNs and Grad-CAM"
    )
    sub = verb.add_subparsers(dest="action", metavar="ACTION")
    sub.required = True
    train = sub.add_parser("train", help="train on a cohort labels.csv with patient-level splits")
    train.add_argument("labels", help="labels.csv (case_id, ihc_path, ihc_score, patient_id)")
    train.add_argument("--out", required=True, help="bundle folder or .zip to write")
    train.add_argument("--arch", default="resnet34", choices=ARCHITECTURES)
    train.add_argument("--scores", default="1,2,3", help="IHC scores to grade (default 1,2,3)")
    train.add_argument(
        "--input-size",
        type=int,
        default=PATCH_SIZE,
        help="resize 512 px patches to this before the CNN",
    )
    train.add_argument("--epochs", type=int, default=5)
    train.add_argument("--batch-size", type=int, default=16)
    train.add_argument("--lr", type=float, default=1e-3)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--no-macenko", action="store_true", help="skip stain normalisation")
    _common(train)
    train.set_defaults(func=run_train)
    predict = sub.add_parser("predict", help="grade a slide: per-patch and slide-level grade")
    predict.add_argument("model", help="bundle, or weights file with --arch")
    predict.add_argument("slide")
    predict.add_argument("--arch", default=None, choices=ARCHITECTURES)
    predict.add_argument("--out", default=None, help="JSON of per-patch grades (coords, probs)")
    _common(predict)
    predict.set_defaults(func=run_predict)
    cam = sub.add_parser("gradcam", help="Grad-CAM score map of a slide (level-0 aligned)")
    cam.add_argument("model")
    cam.add_argument("slide")
    cam.add_argument("--out", required=True, help=".npy score map (NaN outside patches)")
    cam.add_argument("--arch", default=None, choices=ARCHITECTURES)
    cam.add_argument("--grade", default=None, help="class to explain (default: predicted)")
    cam.add_argument("--downsample", type=float, default=16.0, help="level-0 px per map px")
    _common(cam)
    cam.set_defaults(func=run_gradcam)


def _emit(summary: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(summary, indent=2, default=float))
    else:
        for key, value in summary.items():
            print(f"{key}: {value}")


def _gather(cases, score_index, limit, seed):
    xs, ys, groups = [], [], []
    for case in cases:
        patches, _, _ = slide_patches(case.path, limit=limit, seed=seed)
        xs.append(patches)
        ys += [score_index[case.score]] * len(patches)
        groups += [case.case_id] * len(patches)
    if not ys:
        raise ModelError("No tissue patch found in these slides.")
    return np.concatenate(xs), np.array(ys), np.array(groups)


def _fit_normalizer(patches: np.ndarray) -> dict | None:
    mosaic = np.concatenate(list(patches[:4]), axis=1)
    try:
        return MacenkoNormalizer.fit(mosaic).to_dict()
    except StainError:
        return None


def _evaluate(model, transform, x, y, groups, classes, device) -> dict:
    probs = predict_proba(model, transform(x), device=device)
    slides = sorted(set(groups))
    slide_probs = np.stack([slide_grade(probs[groups == g])[1] for g in slides])
    slide_truth = [int(y[groups == g][0]) for g in slides]
    return {
        "patch": asdict(grading_metrics(y, probs, classes)),
        "slide": asdict(grading_metrics(slide_truth, slide_probs, classes)),
    }


def run_train(args) -> int:
    """Train a patch CNN and write a bundle with its held-out metrics."""
    scores = [int(s) for s in args.scores.split(",")]
    classes = [SCORE_NAMES[s] for s in scores]
    cases = [c for c in read_cohort(args.labels) if c.score in scores]
    split = patient_split(cases, seed=args.seed)
    index = {s: k for k, s in enumerate(scores)}
    data = {name: _gather(group, index, args.limit, args.seed) for name, group in split.items()}
    device = choose_device(args.device)
    meta = {
        "arch": args.arch,
        "classes": classes,
        "input_size": args.input_size,
        "max_background": MAX_BACKGROUND,
        "aggregation": "mean patch probability, argmax",
        "normalizer": None if args.no_macenko else _fit_normalizer(data["train"][0]),
    }
    transform = input_transform(meta)
    model = build_patch_cnn(args.arch, len(classes), seed=args.seed)
    x_train, y_train, _ = data["train"]
    result = train_patch_cnn(
        model, transform(x_train), y_train, args.epochs, args.batch_size, args.lr, args.seed, device
    )
    metrics = {
        n: _evaluate(model, transform, *data[n], classes, device) for n in ("validation", "test")
    }
    meta |= {
        "metrics": metrics,
        "train_losses": result.losses,
        "provenance": {
            "labels": str(Path(args.labels).resolve()),
            "seed": args.seed,
            "epochs": args.epochs,
            "split_patients": {k: sorted({c.patient_id for c in v}) for k, v in split.items()},
        },
    }
    save_patch_cnn(args.out, model.cpu(), meta)
    test = metrics["test"]
    _emit(
        {
            "bundle": str(args.out),
            "train_patches": len(y_train),
            "seconds": result.seconds,
            "test_patch_macro_auc": test["patch"]["macro_auc"],
            "test_patch_accuracy": test["patch"]["accuracy"],
            "test_slide_accuracy": test["slide"]["accuracy"],
            "test_patch_confusion": test["patch"]["confusion"],
        },
        args.json,
    )
    return 0


def run_predict(args) -> int:
    """Grade a slide with a trained patch CNN."""
    result = grade_slide(args.slide, args.model, args.arch, args.limit, args.device)
    classes = result.classes
    if args.out:
        result.save(args.out)
    counts = np.bincount(result.probs.argmax(1), minlength=len(classes))
    summary = {
        "slide": str(args.slide),
        "grade": result.grade,
        "patches": len(result.probs),
        "mean_probability": dict(
            zip(classes, np.round(result.mean_probability, 4).tolist(), strict=True)
        ),
        "patch_grades": dict(zip(classes, counts.tolist(), strict=True)),
    }
    _emit(summary, args.json)
    return 0


def run_gradcam(args) -> int:
    """Write a slide-level Grad-CAM score map (``.npy``, level-0 aligned)."""
    result = gradcam_slide(
        args.slide, args.model, args.grade, args.arch, args.limit, args.downsample, args.device
    )
    np.save(args.out, result.values)
    summary = {
        "slide": str(args.slide),
        "out": str(args.out),
        "downsample": result.downsample,
        "shape": list(result.values.shape),
        "patches": len(result.patch_probs),
    }
    _emit(summary, args.json)
    return 0
