"""Rule-based IHC score and seed 003's stain-intensity baseline on a synthetic cohort.

Prints JSON: score time per slide, accuracy and quadratic-weighted kappa of the
rule-based score, and the balanced accuracy on held-out cases (fit on the even
cases, tested on the odd ones, then the other way round) of the stain-intensity
baseline and, with ``--mil``, of the attention MIL (ResNet-34 features; seeded
random weights unless ``--encoder-weights`` names a torchvision ResNet-34 file).

    .venv/bin/python benchmarks/bench_ihc.py [--cases 8] [--seed 11] [--size 3000x2400] [--mil]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import accuracy_score, balanced_accuracy_score, cohen_kappa_score

from her2viewer.analysis.ihc import score_ihc
from her2viewer.analysis.ihc_baseline import (
    StainIntensityBaseline,
    cohort_descriptors,
    read_labels,
)
from her2viewer.analysis.ihc_mil import (
    predict_mil,
    resnet34_encoder,
    slide_features,
    train_ihc_mil,
)
from her2viewer.slide import open_slide
from her2viewer.slide.synthetic import write_cohort


def _held_out(fit_predict, scores, statuses):
    """Two-fold (even/odd cases) held-out predictions: ``fit_predict(train, test) -> (s, st)``."""
    pred_score, pred_status = np.zeros_like(scores), np.empty_like(statuses)
    for k in (0, 1):
        test = np.arange(len(scores)) % 2 == k
        pred_score[test], pred_status[test] = fit_predict(~test, test)
    return {
        "ihc_score_balanced_accuracy": balanced_accuracy_score(scores, pred_score),
        "status_balanced_accuracy": balanced_accuracy_score(statuses, pred_status),
    }


def _baseline(descriptors, scores, statuses):
    def fit_predict(train, test):
        model = StainIntensityBaseline.fit(descriptors[train], scores[train], statuses[train])
        return model.predict(descriptors[test])

    return _held_out(fit_predict, scores, statuses)


def _mil(rows, scores, statuses, weights, features_dir: Path):
    encoder = resnet34_encoder(weights, None if weights else 0)
    start = time.perf_counter()
    bags = []
    for row in rows:
        with open_slide(row["ihc_path"]) as slide:
            name = Path(row["ihc_path"]).parent.name
            bags.append(slide_features(slide, encoder, features_dir / f"{name}.h5").features)
    seconds = (time.perf_counter() - start) / len(rows)

    def fit_predict(train, test):
        model = train_ihc_mil(
            [bags[i] for i in np.nonzero(train)[0]], scores[train], statuses[train]
        )
        predictions = [predict_mil(model, bags[i]) for i in np.nonzero(test)[0]]
        return [p.score for p in predictions], [p.status for p in predictions]

    result = _held_out(fit_predict, scores, statuses)
    return {**result, "encoder": encoder.provenance, "feature_seconds_per_slide": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cases", type=int, default=8)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--size", default="3000x2400")
    parser.add_argument("--mil", action="store_true", help="also train/test the attention MIL")
    parser.add_argument("--encoder-weights", help="torchvision ResNet-34 weights for --mil")
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        labels = write_cohort(Path(tmp), args.cases, args.seed, size)
        rows = read_labels(labels)
        truth = np.array([int(r["ihc_score"]) for r in rows])
        statuses = np.array([r["her2_status"] for r in rows])
        times, cpu_times, predicted = [], [], []
        for row in rows:
            start, cpu = time.perf_counter(), time.process_time()
            with open_slide(row["ihc_path"]) as slide:
                predicted.append(score_ihc(slide).score)
            times.append(time.perf_counter() - start)
            cpu_times.append(time.process_time() - cpu)
        start = time.perf_counter()
        descriptors = cohort_descriptors(rows)
        descriptor_time = (time.perf_counter() - start) / len(rows)
        baseline = _baseline(descriptors, truth, statuses)
        mil = _mil(rows, truth, statuses, args.encoder_weights, Path(tmp)) if args.mil else None
    print(
        json.dumps(
            {
                "cohort": {"cases": args.cases, "seed": args.seed, "size": args.size},
                "rule_based": {
                    "accuracy": accuracy_score(truth, predicted),
                    "quadratic_kappa": cohen_kappa_score(truth, predicted, weights="quadratic"),
                    "truth": truth.tolist(),
                    "predicted": predicted,
                    "seconds_per_slide_median": float(np.median(times)),
                    "seconds_per_slide_max": float(np.max(times)),
                    "cpu_seconds_per_slide_median": float(np.median(cpu_times)),
                    "load_average_1min": os.getloadavg()[0],
                },
                "stain_intensity_baseline_held_out": {
                    **baseline,
                    "descriptor_seconds_per_slide": descriptor_time,
                },
                "attention_mil_held_out": mil,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
