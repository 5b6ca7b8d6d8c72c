"""Verbs ``grade train|predict|gradcam``: HER2 IHC patch grading (seed 004).

The method is that of "Deep Learning Based Automated HER2 Score Prediction Using
Immunohistochemistry Histopathological Images: A Dual-Center Study" (preprint). ``patchcnn``
is the verb's old, deprecated spelling, still accepted. Training is
:func:`her2viewer.training.grade_train.train_cohort`.
"""

from __future__ import annotations

import argparse
import json
import math
import sys

import numpy as np

from her2viewer.analysis.grade import GradeOptions, analyse_grade, gradcam_slide
from her2viewer.argtypes import bounded
from her2viewer.cli.options import (
    EPOCHS,
    LEARNING_RATE,
    SEED,
    add_device_option,
    add_json_option,
    add_output_option,
    add_progress_options,
    add_roi_options,
    roi_region,
)
from her2viewer.cli.progress import progress_reporter
from her2viewer.models.checks import add_mpp_option, with_notice
from her2viewer.models.patch_cnn import ARCHITECTURES
from her2viewer.models.patch_data import SCORE_NAMES, TUMOR_RULES
from her2viewer.outputs import atomic_output, check_output_file
from her2viewer.slide import open_slide
from her2viewer.training.grade_train import RECIPES, train_cohort

#: The verb's old spelling, still accepted with a note on stderr.
DEPRECATED_ALIAS = "patchcnn"
#: CNN input sides: ResNets need 32 px to keep one cell after their five halvings.
INPUT_SIZE = bounded(int, 32, 1024)


def _scores(text: str) -> tuple[int, ...]:
    """Parse ``--scores``: two or more distinct IHC scores (0-3), comma-separated."""
    try:
        scores = tuple(int(v) for v in text.split(","))
    except ValueError:
        scores = ()
    if len(scores) < 2 or len(set(scores)) < len(scores) or not set(scores) <= set(SCORE_NAMES):
        raise argparse.ArgumentTypeError(
            f"'{text}' is not two or more distinct IHC scores from 0 to 3, e.g. 1,2,3"
        )
    return scores


def _rect(text: str) -> tuple[float, float, float, float]:
    """Parse ``--rect``: finite level-0 ``X0,Y0,X1,Y1`` with ``X0 < X1`` and ``Y0 < Y1``."""
    try:
        x0, y0, x1, y1 = (float(v) for v in text.split(","))
    except ValueError:
        x0 = y0 = x1 = y1 = math.nan
    finite = all(math.isfinite(v) for v in (x0, y0, x1, y1))
    if not (finite and x0 < x1 and y0 < y1):
        raise argparse.ArgumentTypeError(
            f"'{text}' is not a finite region X0,Y0,X1,Y1 with X0 < X1 and Y0 < Y1"
        )
    return x0, y0, x1, y1


def _common(parser) -> None:
    parser.add_argument("--limit", type=bounded(int, 1, 10**6), help="at most N patches per slide")
    parser.add_argument(
        "--tumor",
        default="auto",
        choices=TUMOR_RULES,
        help="patch choice: tumor mask when there is one, else stain density (auto)",
    )
    add_device_option(parser)
    add_json_option(parser, "the summary")


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
        aliases=[DEPRECATED_ALIAS],
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
    add_output_option(train, "bundle folder or .zip to write", required=True)
    train.add_argument("--arch", default="resnet34", choices=ARCHITECTURES)
    train.add_argument("--recipe", default="linear-head", choices=RECIPES)
    train.add_argument(
        "--scores", type=_scores, default=(1, 2, 3), help="IHC scores to grade (default 1,2,3)"
    )
    train.add_argument(
        "--input-size",
        type=INPUT_SIZE,
        default=128,
        help="resize 512 px patches to this for the CNN (32 to 1024)",
    )
    train.add_argument("--step", type=bounded(int, 32, 8192), help="grid step (px at 20x)")
    train.add_argument("--epochs", type=EPOCHS, default=5, help="full recipe only")
    train.add_argument("--batch-size", type=bounded(int, 1, 4096), default=16)
    train.add_argument("--lr", type=LEARNING_RATE, default=1e-3, help="full recipe only")
    train.add_argument("--seed", type=SEED, default=0)
    train.add_argument("--no-macenko", action="store_true", help="skip stain normalisation")
    _common(train)
    add_progress_options(train)
    train.set_defaults(func=_noting_alias(run_train))
    predict = sub.add_parser("predict", help="grade a slide: per-patch and slide-level grade")
    predict.add_argument("slide")
    _model_option(predict)
    add_roi_options(predict)
    add_output_option(predict, "JSON of per-patch grades (coords, probs)")
    _common(predict)
    add_progress_options(predict)
    predict.set_defaults(func=_noting_alias(run_predict))
    cam = sub.add_parser("gradcam", help="Grad-CAM score map of a slide (level-0 aligned)")
    cam.add_argument("slide")
    _model_option(cam)
    add_output_option(cam, ".npy score map (NaN outside patches)", required=True)
    cam.add_argument("--grade", default=None, help="class to explain (default: predicted)")
    cam.add_argument(
        "--downsample",
        type=bounded(float, 1.0, 1024.0),
        default=16.0,
        help="level-0 px per map px, 1 to 1024 (default 16)",
    )
    cam.add_argument("--rect", type=_rect, help="only level-0 region X0,Y0,X1,Y1")
    _common(cam)
    cam.set_defaults(func=_noting_alias(run_gradcam))


def _noting_alias(run):
    """Wrap a sub-verb's ``run`` so that the old spelling ``patchcnn`` notes it on success.

    The note comes only after the verb succeeded, so that an error stays one line.
    """

    def run_verb(args) -> int:
        status = run(args)
        if args.verb == DEPRECATED_ALIAS:
            print(
                f"her2viewer: note: '{DEPRECATED_ALIAS}' is deprecated and will be removed in "
                "the next release; use 'grade'.",
                file=sys.stderr,
            )
        return status

    return run_verb


def _emit(summary: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(summary, indent=2, default=float))
    else:
        for key, value in summary.items():
            print(f"{key}: {value}")


def run_train(args) -> int:
    """Train a patch CNN and write a bundle with its held-out metrics."""
    with progress_reporter(args, "grade train", "steps") as progress:
        meta = train_cohort(
            args.labels, args.out, args.arch, args.scores,
            args.recipe, args.input_size, args.seed, args.limit, args.step, args.tumor,
            not args.no_macenko, args.epochs, args.batch_size, args.lr, args.device,
            context=progress.context(),
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
    options = GradeOptions(
        args.arch, args.limit, args.device, args.tumor, mpp=args.mpp, region=roi_region(args)
    )
    with (
        open_slide(args.slide) as slide,
        progress_reporter(args, "grade predict", "patches") as progress,
    ):
        result = analyse_grade(slide, args.model, options, progress.context())
    if result.warning:
        print(result.warning, file=sys.stderr)
    if args.out:
        result.save(args.out)
    summary = {"slide": str(args.slide)} | result.summary()
    if not args.json:
        summary["grade"] = with_notice(result.grade, result.notice)
        del summary["notice"], summary["warning"]
        if summary["region"] is None:  # the whole slide: nothing to say
            del summary["region"]
    _emit(summary, args.json)
    return 0


def run_gradcam(args) -> int:
    """Write a slide-level Grad-CAM score map (``.npy``, level-0 aligned)."""
    check_output_file(args.out)
    result = gradcam_slide(
        args.slide, args.model, args.grade, args.arch, args.limit, args.downsample, args.device,
        tumor=args.tumor, rect=args.rect, mpp=args.mpp,
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
