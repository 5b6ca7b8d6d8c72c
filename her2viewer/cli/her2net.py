"""Verbs ``her2net train|predict|evaluate``: HER2 status from H&E by high-expression percent."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from her2viewer.argtypes import bounded
from her2viewer.cli.options import (
    EPOCHS,
    LEARNING_RATE,
    MAGNIFICATION,
    SEED,
    add_batching_options,
    add_device_option,
    add_json_option,
    add_output_option,
    add_progress_options,
    add_roi_options,
    add_threads_option,
    apply_threads,
    roi_region,
)
from her2viewer.cli.progress import progress_reporter
from her2viewer.jobs import run_inline
from her2viewer.models.checks import add_mpp_option, with_notice
from her2viewer.models.her2net.choices import CLASSIFIERS, KINDS, POSITIVE_PERCENT, SEGMENTERS

#: Tile and network input sides (px).
TILE_SIDE = bounded(int, 16, 4096)
#: Base channel widths of the segmenter and classifier.
WIDTH = bounded(int, 1, 1024)

# torch-heavy modules are imported inside the run_* functions, so that building the
# command line (every verb's start-up) does not load torch.


def register(subparsers) -> None:
    """Add the ``her2net`` verb and its sub-verbs."""
    parser = subparsers.add_parser(
        "her2net",
        help="HER2 status from H&E with HER2Net (Liao et al.)",
        description="HER2Net: the method of Liao Y. et al., 'Artificial Intelligence for "
        "Predicting HER2 Status of Gastric Cancer Based on Whole-Slide Histopathology Images: "
        "A Retrospective Multicenter Study'.",
    )
    verbs = parser.add_subparsers(dest="her2net_verb", metavar="ACTION")
    verbs.required = True

    train = verbs.add_parser("train", help="train a HER2Net bundle on a cohort (resumable)")
    train.add_argument("--cohort", required=True, help="labels.csv (case_id, he_path, ...)")
    add_output_option(train, "bundle folder to write", required=True)
    train.add_argument("--work", help="stage folder (default OUT.work); rerun to resume")
    train.add_argument("--tile-labels", help="manual-label CSV (case_id,x,y,label) instead of IHC")
    train.add_argument("--magnification", type=MAGNIFICATION, default=4.0)
    train.add_argument("--tile-size", type=TILE_SIDE, default=512, help="16 to 4096 (512)")
    train.add_argument("--input-size", type=TILE_SIDE, help="network input side (16 to 4096)")
    train.add_argument("--segmenter", choices=SEGMENTERS, default="unet")
    train.add_argument("--seg-width", type=WIDTH, default=64)
    train.add_argument("--seg-depth", type=bounded(int, 1, 8), default=4)
    train.add_argument("--classifier", choices=CLASSIFIERS, default="resnet50")
    train.add_argument("--cls-width", type=WIDTH, default=64, help="base width (64 = standard)")
    train.add_argument("--integrated", choices=KINDS, default="rf")
    train.add_argument("--seg-epochs", type=EPOCHS, default=20)
    train.add_argument("--cls-epochs", type=EPOCHS, default=20)
    train.add_argument("--lr", type=LEARNING_RATE, default=1e-5)
    train.add_argument("--batch-size", type=bounded(int, 1, 4096), default=32)
    train.add_argument("--seed", type=SEED, default=0)
    _device_options(train)
    add_progress_options(train)
    train.set_defaults(func=run_train)

    predict = verbs.add_parser("predict", help="HER2 status, P and overlays for one H&E slide")
    predict.add_argument("slide")
    predict.add_argument("--model", help="HER2Net bundle (default: the synthetic demo bundle)")
    add_output_option(predict, "folder for the overlay files (default: the cache)")
    predict.add_argument(
        "--threshold",
        type=bounded(float, 0.0, 100.0),
        default=POSITIVE_PERCENT,
        help=f"positive when P >= this %%, 0 to 100 (default {POSITIVE_PERCENT:g})",
    )
    add_mpp_option(predict)
    add_batching_options(predict)
    _device_options(predict)
    add_json_option(predict, "the summary")
    add_roi_options(predict)
    add_progress_options(predict)
    predict.set_defaults(func=run_predict)

    evaluate = verbs.add_parser("evaluate", help="status metrics, tumor mIoU and P on a cohort")
    evaluate.add_argument("--cohort", required=True)
    evaluate.add_argument("--model", help="HER2Net bundle (default: the demo bundle)")
    _device_options(evaluate)
    add_output_option(evaluate, "write the JSON report here too", deprecated=("--output",))
    add_progress_options(evaluate)
    evaluate.set_defaults(func=run_evaluate)


def _device_options(parser) -> None:
    add_device_option(parser)
    add_threads_option(parser)


def run_train(args) -> int:
    """``her2net train``: stages print their progress on stderr."""
    from her2viewer.analysis.her2net import ihc_high_mask
    from her2viewer.models.her2net.training import Her2NetTrainConfig, train_her2net

    apply_threads(args.threads)
    config = Her2NetTrainConfig(
        magnification=args.magnification,
        tile_size=args.tile_size,
        input_size=args.input_size or args.tile_size,
        segmenter={"arch": args.segmenter, "width": args.seg_width, "depth": args.seg_depth},
        classifier={"arch": args.classifier, "width": args.cls_width},
        integrated=args.integrated,
        segmenter_epochs=args.seg_epochs,
        classifier_epochs=args.cls_epochs,
        lr=args.lr,
        batch_size=args.batch_size,
        tile_labels=args.tile_labels,
        seed=args.seed,
        device=args.device,
    )
    with progress_reporter(args, "her2net train", "steps") as progress:
        path = run_inline(
            lambda ctx: train_her2net(
                args.cohort, args.out, config, args.work, ctx, high_mask=ihc_high_mask
            ),
            progress.listener,
        )
    print(path)
    return 0


def run_predict(args) -> int:
    """``her2net predict``: status, P, areas and overlay paths."""
    from her2viewer.analysis.her2net import analyse_her2net
    from her2viewer.annotations.roi import region_text
    from her2viewer.models.checks import apply_pixel_size
    from her2viewer.models.her2net.model import demo_bundle_path, load_her2net
    from her2viewer.models.her2net.predict import Her2NetOptions
    from her2viewer.outputs import prepare_output_dir
    from her2viewer.slide import open_slide

    apply_threads(args.threads)
    region = roi_region(args)
    if args.out:
        prepare_output_dir(args.out)
    bundle = Path(args.model) if args.model else demo_bundle_path()
    model = load_her2net(bundle, args.device)
    batching = {k: getattr(args, k) for k in ("batch_size", "workers") if getattr(args, k)}
    options = Her2NetOptions(positive_percent=args.threshold, region=region, **batching)
    with (
        open_slide(args.slide) as slide,
        progress_reporter(args, "her2net predict", "tiles") as progress,
    ):
        apply_pixel_size(slide, args.mpp)
        result = run_inline(
            lambda ctx: analyse_her2net(slide, bundle, options, ctx, model=model, out_dir=args.out),
            progress.listener,
        )
    if result.warning:
        print(result.warning, file=sys.stderr)
    summary = result.summary()
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        s = summary
        status = with_notice(
            f"HER2 {s['her2_status']}: high-expression {s['high_expression_percent']:.1f}% "
            f"(positive at >= {s['positive_percent']:g}%)",
            result.notice,
        )
        print(
            f"{status}, tumor {s['tumor_area_px']:.0f} px, strong {s['strong_area_px']:.0f} px; "
            f"overlays in {Path(s['overlays']['result']).parent}"
        )
        if region is not None:
            print(f"Region: {region_text(s)}")
    return 0


def run_evaluate(args) -> int:
    """``her2net evaluate``: JSON report on stdout."""
    from her2viewer.models.her2net.evaluation import evaluate_cohort
    from her2viewer.models.her2net.model import load_her2net
    from her2viewer.outputs import check_output_file, write_text_atomic

    apply_threads(args.threads)
    if args.out:
        check_output_file(args.out)
    model = load_her2net(args.model, args.device)
    with progress_reporter(args, "her2net evaluate", "cases") as progress:
        report = run_inline(
            lambda ctx: evaluate_cohort(args.cohort, model, None, ctx), progress.listener
        )
    text = json.dumps(report, indent=2)
    if args.out:
        write_text_atomic(args.out, text)
    print(text)
    return 0
