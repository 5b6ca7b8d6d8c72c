"""Automatic H&E <-> IHC registration on synthetic pairs with known transforms.

Prints JSON: time per pair, landmark error (median and max over IHC tissue points,
level-0 px at 20x) against ``transform_ihc_to_he``, the registration's own measured
error, and whether unrelated pairs are refused. Wall time depends on what else runs on
the machine: ``cpu_seconds`` (process CPU time) and the load average are printed too.

    .venv/bin/python benchmarks/bench_registration.py [--cases 8] [--seed 11] [--size 3000x2400]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from her2viewer.errors import RegistrationError
from her2viewer.registration import register_slides
from her2viewer.slide import open_slide
from her2viewer.slide.synthetic import write_cohort


def _landmark_errors(case: Path, registration) -> np.ndarray:
    ys, xs = np.nonzero(cv2.imread(str(case / "ihc_tissue_mask.png"), 0))
    points = np.stack([xs, ys], 1) * 16.0 + 8.0
    truth = np.array(json.loads((case / "truth.json").read_text())["transform_ihc_to_he"])
    expected = points @ truth[:2, :2].T + truth[:2, 2]
    return np.hypot(*(registration.transform_points(points) - expected).T)


def _register(fixed: Path, moving: Path):
    """Register a pair; return the result (None when refused), wall and CPU seconds."""
    start, cpu = time.perf_counter(), time.process_time()
    with open_slide(fixed) as f, open_slide(moving) as m:
        try:
            result = register_slides(f, m)
        except RegistrationError:
            result = None
    return result, time.perf_counter() - start, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cases", type=int, default=8)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--size", default="3000x2400")
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))
    pairs, unrelated = [], []
    with tempfile.TemporaryDirectory() as tmp:
        write_cohort(Path(tmp), args.cases, args.seed, size)
        cases = sorted(p for p in Path(tmp).iterdir() if p.is_dir())
        for case in cases:
            result, seconds, cpu = _register(case / "he.svs", case / "ihc.svs")
            errors = _landmark_errors(case, result) if result else np.array([np.inf])
            pairs.append(
                {
                    "case": case.name,
                    "seconds": seconds,
                    "cpu_seconds": cpu,
                    "registered": result is not None,
                    "landmark_error_median_px": float(np.median(errors)),
                    "landmark_error_max_px": float(errors.max()),
                    "measured_error_px": result.error_px if result else None,
                }
            )
        for a, b in zip(cases, cases[1:] + cases[:1], strict=True):
            result, _, _ = _register(a / "he.svs", b / "ihc.svs")
            unrelated.append({"he": a.name, "ihc": b.name, "refused": result is None})
    medians = [p["landmark_error_median_px"] for p in pairs]
    print(
        json.dumps(
            {
                "cohort": {"cases": args.cases, "seed": args.seed, "size": args.size},
                "worst_case_median_error_px": max(medians),
                "worst_max_error_px": max(p["landmark_error_max_px"] for p in pairs),
                "seconds_per_pair_max": max(p["seconds"] for p in pairs),
                "seconds_per_pair_median": float(np.median([p["seconds"] for p in pairs])),
                "cpu_seconds_per_pair_max": max(p["cpu_seconds"] for p in pairs),
                "load_average_1min": os.getloadavg()[0],
                "unrelated_refused": f"{sum(u['refused'] for u in unrelated)}/{len(unrelated)}",
                "pairs": pairs,
                "unrelated": unrelated,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
