"""Verbs ``radiomics extract|extract-batch|train|evaluate|predict`` (seed 001)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from her2viewer.argtypes import bounded
from her2viewer.cli.options import add_json_option, add_output_option, add_progress_options
from her2viewer.cli.progress import progress_reporter
from her2viewer.errors import RadiomicsError
from her2viewer.outputs import check_output_file, prepare_output_dir
from her2viewer.radiomics.features import RadiomicsSettings, extract_features
from her2viewer.radiomics.filters import parse_filter_spec
from her2viewer.radiomics.model import (
    MODEL_NAMES,
    load_models,
    predict_saved,
    read_feature_table,
    save_models,
    score_report,
    train_models,
)
from her2viewer.radiomics.params import read_params, settings_for_features
from her2viewer.radiomics.plots import write_report_figures
from her2viewer.radiomics.predict import predict_case
from her2viewer.radiomics.volume import load_volume
from her2viewer.tables import read_csv_rows, write_csv


def _settings_options(parser) -> None:
    parser.add_argument(
        "--params",
        help="PyRadiomics parameter file (YAML or JSON: imageType, featureClass, setting)",
    )
    parser.add_argument(
        "--filter",
        action="append",
        default=[],
        metavar="SPEC",
        help="add an image filter (repeat): original, log:sigma=1,3, "
        "wavelet[:wavelet=coif1,level=1,start_level=0], square, squareroot, logarithm, "
        "exponential, gradient",
    )
    parser.add_argument("--label", type=bounded(int, 1), help="ROI value in the mask (default 1)")
    parser.add_argument(
        "--bin-width", type=bounded(float, 0, low_open=True), help="above 0 (default 25)"
    )
    parser.add_argument("--shift", type=bounded(float), help="voxelArrayShift (default 0)")
    parser.add_argument("--classes", help="comma-separated feature classes (default: all)")


def register(subparsers) -> None:
    """Add the ``radiomics`` verb and its actions."""
    verb = subparsers.add_parser("radiomics", help="CT/MR radiomic features and HER2 classifiers")
    sub = verb.add_subparsers(dest="action", metavar="ACTION")
    sub.required = True
    one = sub.add_parser("extract", help="features of one volume + ROI mask (NRRD or NIfTI)")
    one.add_argument("image")
    one.add_argument("mask")
    add_json_option(one, "the features")
    _settings_options(one)
    one.set_defaults(func=run_extract)
    batch = sub.add_parser("extract-batch", help="features CSV from a cases CSV")
    batch.add_argument(
        "cases", help="CSV with case_id, image, mask[, label] (paths relative to it)"
    )
    add_output_option(batch, "features CSV to write", required=True)
    _settings_options(batch)
    add_progress_options(batch)
    batch.set_defaults(func=run_extract_batch)
    train = sub.add_parser("train", help="PCA -> LR / RF / MLP on a labelled features CSV")
    train.add_argument("features", help="features CSV with a binary label column")
    add_output_option(train, "model JSON to write", required=True)
    train.add_argument("--figures", default=None, help="folder for ROC/PR/learning-curve PNGs")
    train.add_argument("--label-column", default="label")
    train.add_argument(
        "--variance",
        type=bounded(float, 0, 1, low_open=True),
        default=0.95,
        help="PCA cumulative variance to keep, above 0 up to 1 (default 0.95)",
    )
    train.add_argument(
        "--test-size",
        type=bounded(float, 0, 1, low_open=True, high_open=True),
        default=0.3,
        help="fraction of cases held out for testing, between 0 and 1 (default 0.3)",
    )
    train.add_argument(
        "--folds", type=bounded(int, 2), default=5, help="cross-validation folds, at least 2"
    )
    train.add_argument("--seed", type=bounded(int, 0, 2**32 - 1), default=0)
    add_json_option(train, "the full report")
    train.set_defaults(func=run_train)
    evaluate = sub.add_parser("evaluate", help="AUC and confusion of a saved model on a CSV")
    evaluate.add_argument("model")
    evaluate.add_argument("features")
    evaluate.add_argument("--label-column", default="label")
    add_json_option(evaluate, "the scores")
    evaluate.set_defaults(func=run_evaluate)
    predict = sub.add_parser("predict", help="HER2 probability of one volume + ROI")
    predict.add_argument("model")
    predict.add_argument("image")
    predict.add_argument("mask")
    predict.add_argument("--classifier", default="logistic_regression", choices=MODEL_NAMES)
    add_json_option(predict, "the prediction")
    _settings_options(predict)
    predict.set_defaults(func=run_predict)


def _settings(args) -> RadiomicsSettings:
    """Settings from ``--params``, then the filters and values given on the command line."""
    base = read_params(args.params) if args.params else RadiomicsSettings()
    image_types = dict(base.image_types)
    for spec in args.filter:
        name, options = parse_filter_spec(spec)
        image_types[name] = options
    given = {
        "bin_width": args.bin_width,
        "label": args.label,
        "voxel_array_shift": args.shift,
        "classes": tuple(c.strip() for c in args.classes.split(",") if c.strip())
        if args.classes
        else None,
    }
    return replace(
        base, image_types=image_types, **{k: v for k, v in given.items() if v is not None}
    )


def _features(image: str | Path, mask: str | Path, settings: RadiomicsSettings) -> dict[str, float]:
    return extract_features(load_volume(image), load_volume(mask), settings)


def run_extract(args) -> int:
    """Print the features of one case."""
    features = _features(args.image, args.mask, _settings(args))
    if args.json:
        print(json.dumps(features, indent=2))
    else:
        for name, value in features.items():
            print(f"{name}: {value:.6g}")
    return 0


def run_extract_batch(args) -> int:
    """Write a features CSV (one row per case) from a cases CSV."""
    cases = Path(args.cases)
    rows = read_csv_rows(cases, ("case_id", "image", "mask"), RadiomicsError, "Cases file")
    out = check_output_file(args.out)  # before the features are computed
    settings = _settings(args)
    table = []
    with progress_reporter(args, "radiomics extract-batch", "cases") as progress:
        for row in rows:
            progress(len(table), len(rows), row["case_id"])
            features = _features(cases.parent / row["image"], cases.parent / row["mask"], settings)
            extra = {"label": row["label"]} if "label" in row else {}
            table.append({"case_id": row["case_id"], **extra, **features})
        progress(len(table), len(rows))
    header = list(table[0])
    write_csv(out, header, ([row[name] for name in header] for row in table))
    print(
        f"wrote {len(table)} cases x {len(table[0]) - 1 - ('label' in table[0])} features to {out}"
    )
    return 0


def run_train(args) -> int:
    """Train the three classifiers, write the model JSON and optional figures."""
    table = read_feature_table(args.features, args.label_column)
    check_output_file(args.out)  # before the minutes of training
    if args.figures:
        prepare_output_dir(args.figures)
    fitted, report = train_models(table, args.test_size, args.variance, args.folds, args.seed)
    save_models(args.out, fitted, table, report)
    if args.figures:
        report["figures"] = [str(p) for p in write_report_figures(report, args.figures)]
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"PCA components: {report['pca']['components']} (of {len(table.feature_names)} features)")
    for name, m in report["models"].items():
        print(
            f"{name}: test AUC {m['auc']:.3f} [{m['auc_ci'][0]:.3f}, {m['auc_ci'][1]:.3f}], "
            f"AP {m['average_precision']:.3f}, accuracy {m['accuracy']:.3f}, "
            f"CV AUC {m['cv_auc_mean']:.3f} +- {m['cv_auc_std']:.3f}"
        )
    return 0


def run_evaluate(args) -> int:
    """Evaluate every saved classifier on a labelled features CSV."""
    payload = load_models(args.model)
    table = read_feature_table(args.features, args.label_column)
    if table.classes != payload["classes"]:
        raise RadiomicsError(
            f"Labels {table.classes} differ from the model's {payload['classes']}."
        )
    index = {name: i for i, name in enumerate(table.feature_names)}
    missing = [f for f in payload["features"] if f not in index]
    if missing:
        raise RadiomicsError(f"Feature '{missing[0]}' is missing from {Path(args.features).name}.")
    x = table.x[:, [index[f] for f in payload["features"]]]
    summary = {
        name: score_report(table.y, predict_saved(payload, x, name), table.classes)
        for name in payload["models"]
    }
    print(
        json.dumps(summary, indent=2)
        if args.json
        else "\n".join(
            f"{k}: AUC {v['auc']:.3f}, accuracy {v['accuracy']:.3f}" for k, v in summary.items()
        )
    )
    return 0


def run_predict(args) -> int:
    """Print the probability of the model's second class for one case."""
    payload = load_models(args.model)
    settings = _settings(args)
    if not (args.params or args.filter or args.classes):
        settings = settings_for_features(payload["features"], settings)
    image, mask = load_volume(args.image), load_volume(args.mask)
    result = predict_case(payload, image, mask, args.classifier, settings).as_dict()
    print(json.dumps(result) if args.json else ", ".join(f"{k}: {v}" for k, v in result.items()))
    return 0
