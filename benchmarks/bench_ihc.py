"""Rule-based IHC score and seed 003's stain-intensity baseline on a synthetic cohort.

Prints JSON: score time per slide, accuracy and quadratic-weighted kappa of the
rule-based score, and the baseline's balanced accuracy on held-out cases (fit on
the even cases, tested on the odd ones, then the other way round).

    .venv/bin/python benchmarks/bench_ihc.py [--cases 8] [--seed 11] [--size 3000x2400]
"""

from __future__ import annotations

import argparse
import json
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
from her2viewer.slide import open_slide
from her2viewer.slide.synthetic import write_cohort


def _held_out(descriptors, scores, statuses):
    """Two-fold (even/odd cases) held-out predictions of the baseline."""
    pred_score, pred_status = np.zeros_like(scores), np.empty_like(statuses)
    folds = [np.arange(len(scores)) % 2 == k for k in (0, 1)]
    for test in folds:
        model = StainIntensityBaseline.fit(descriptors[~test], scores[~test], statuses[~test])
        pred_score[test], pred_status[test] = model.predict(descriptors[test])
    return pred_score, pred_status


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cases", type=int, default=8)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--size", default="3000x2400")
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        labels = write_cohort(Path(tmp), args.cases, args.seed, size)
        rows = read_labels(labels)
        truth = np.array([int(r["ihc_score"]) for r in rows])
        statuses = np.array([r["her2_status"] for r in rows])
        times, predicted = [], []
        for row in rows:
            start = time.perf_counter()
            with open_slide(row["ihc_path"]) as slide:
                predicted.append(score_ihc(slide).score)
            times.append(time.perf_counter() - start)
        start = time.perf_counter()
        descriptors = cohort_descriptors(rows)
        descriptor_time = (time.perf_counter() - start) / len(rows)
        base_score, base_status = _held_out(descriptors, truth, statuses)
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
                },
                "stain_intensity_baseline_held_out": {
                    "ihc_score_balanced_accuracy": balanced_accuracy_score(truth, base_score),
                    "status_balanced_accuracy": balanced_accuracy_score(statuses, base_status),
                    "descriptor_seconds_per_slide": descriptor_time,
                },
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
