"""The ``evaluate`` verb: metrics with confidence intervals for any model's predictions."""

from __future__ import annotations

import json

from her2viewer.cli.options import add_json_option, add_output_option


def register(subparsers) -> None:
    """Add ``evaluate``."""
    evaluate = subparsers.add_parser(
        "evaluate", help="metrics with 95%% CIs, ROC/PR data and figures for predictions"
    )
    evaluate.add_argument(
        "predictions",
        help="CSV: case_id, truth, prediction [, probability | prob_<label> per class]",
    )
    add_output_option(evaluate, "folder for metrics.json and PNGs", required=True)
    evaluate.add_argument("--labels", help="classes in order, comma-separated (default: sorted)")
    evaluate.add_argument("--positive", help="positive class for two classes (default: last)")
    add_json_option(evaluate, "metrics.json")
    evaluate.set_defaults(func=run_evaluate)


def run_evaluate(args) -> int:
    """Evaluate a predictions CSV and write the report folder."""
    from her2viewer.training.evaluate import (
        evaluate_predictions,
        read_predictions,
        write_evaluation,
    )

    labels = args.labels.split(",") if args.labels else None
    truth, prediction, labels, probabilities = read_predictions(args.predictions, labels)
    result = evaluate_predictions(truth, prediction, labels, probabilities, args.positive)
    written = write_evaluation(result, args.out)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    for name, estimate in result["metrics"].items():
        print(f"{name:18} {estimate['value']:.3f}  [{estimate['low']:.3f}, {estimate['high']:.3f}]")
    for key in ("auc", "macro_auc"):
        if key in result:
            auc = result[key]
            print(f"{key:18} {auc['value']:.3f}  [{auc['low']:.3f}, {auc['high']:.3f}]")
    print("wrote " + ", ".join(str(p) for p in written))
    return 0
