"""The cell engine measured: speed, a held-out synthetic cohort, real Ki67 fields, a whole slide.

Prints JSON with four parts:

- ``speed``: a 4000 x 4000 px field at 0.5 um/px (about 20,000 cells) detected, measured,
  classed and decided, with 1 and 2 worker threads: seconds and cells per second;
- ``synthetic``: :func:`her2viewer.cells.evaluate.evaluate_cohort` on cell-truth cohorts
  (HER2: null, ultralow, 1+, 2+, 3+; Ki67) written with a seed no threshold was chosen on;
- ``clones``: HER2 fields whose classes come in clones (stained cells beside unstained ones,
  so membranes are shared) at 20x and 40x: per-cell accuracy, the share of unstained cells
  called stained, positive-% error and category per field;
- ``real``: detection F1 (centres within 4 um), count and positive-% errors on the two real
  Ki67 fields of ``../shared/data/real/ihc-cells`` (DeepLIIF, 40x, taken as 0.25 um/px),
  with the current defaults and with QuPath's detection defaults for comparison; skipped
  with a note when the folder is absent (the fields are never copied into the project);
- ``background``: a whole synthetic slide run as a background ``jobs.Job`` with progress,
  then again cancelled after its first progress report: how long the cancel took.

    nice .venv/bin/python benchmarks/bench_cells.py [--cases 5] [--seed 2026] [--slide 8000x6000]
                                                    [--speed-only]

Wall times depend on what else the machine runs: each speed figure comes with the process's
CPU seconds and the 1-minute load average.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
import time
from pathlib import Path

import cv2
import numpy as np
from scipy import ndimage

from her2viewer.cells.engine import Cells, class_of_cells, decide, detect_cells
from her2viewer.cells.evaluate import (
    MATCH_DISTANCE_UM,
    class_confusion,
    evaluate_case,
    evaluate_cohort,
    match_cells,
)
from her2viewer.cells.profiles import NucleusProfile, load_profile
from her2viewer.cells.truth import write_cell_cohort
from her2viewer.jobs.core import Job
from her2viewer.slide.cell_field import draw_cell_field

REAL = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "real" / "ihc-cells"
#: DeepLIIF's tiles are 512 px at 40x (its README: tile size 512 for 40x images).
REAL_MPP = 0.25
QUPATH_DETECTION = NucleusProfile(threshold_od=0.1, smoothing_sigma_um=1.5, split_distance_um=2.5)


def speed(workers: tuple[int, ...] = (1, 2)) -> dict:
    """Detect, measure, class and decide a 4000 x 4000 px field at 0.5 um/px."""
    start = time.perf_counter()
    field = draw_cell_field(4000, 4000, (0.4, 0.3, 0.2, 0.1), marker="her2", seed=1)
    out = {"region_px": [4000, 4000], "mpp": 0.5, "n_true_cells": int(field.x.size)}
    out["draw_seconds"] = round(time.perf_counter() - start, 2)
    profile = load_profile(None, "her2")

    def read(x, y, w, h):
        return field.rgb[y : y + h, x : x + w]

    for n in workers:
        start, cpu = time.perf_counter(), time.process_time()
        table = detect_cells(read, (0, 0, 4000, 4000), 0.5, profile, workers=n)
        cells = Cells(table, class_of_cells(table, profile), "her2", 0.5)
        category = decide(cells).category
        seconds = time.perf_counter() - start
        out[f"workers_{n}"] = {
            "seconds": round(seconds, 2),
            "cpu_seconds": round(time.process_time() - cpu, 2),
            "n_cells": len(cells),
            "cells_per_s": round(len(cells) / seconds),
            "category": category,
            "load_average_1min": round(os.getloadavg()[0], 1),
        }
    return out


def synthetic(folder: Path, cases: int, seed: int, size: tuple[int, int]) -> dict:
    """Write held-out cell-truth cohorts (HER2 and Ki67) and evaluate the engine on them."""
    out = {"seed": seed, "size_px": list(size)}
    for marker in ("her2", "ki67"):
        start = time.perf_counter()
        labels = write_cell_cohort(folder / marker, cases, marker, seed, size)
        written = time.perf_counter() - start
        report = evaluate_cohort(labels.parent)
        report["cases"] = [
            {
                "case_id": c["case_id"],
                "kind": c["kind"],
                "f1": round(c["detection"]["f1"], 4),
                "positive_percent": {k: round(v, 2) for k, v in c["positive_percent"].items()},
                "category": c["category"],
            }
            for c in report["cases"]
        ]
        report["write_seconds"] = round(written, 1)
        report["evaluate_seconds"] = round(time.perf_counter() - start - written, 1)
        out[marker] = report
    return out


#: Class mixes of the clonal fields (0, faint, weak-moderate, strong).
CLONE_MIXES = ((0.5, 0.1, 0.2, 0.2), (0.3, 0.1, 0.2, 0.4), (0.85, 0.15, 0, 0), (0.6, 0.3, 0.1, 0),
               (0.4, 0.2, 0.3, 0.1))  # fmt: skip


def clones(side_um: float = 800.0) -> dict:
    """Clonal HER2 fields at 20x and 40x: how shared membranes are attributed."""
    profile = load_profile(None, "her2")
    out = {}
    for mpp in (0.5, 0.25):
        side = int(side_um / mpp)
        total, fields = np.zeros((4, 4), np.int64), []
        for index, mix in enumerate(CLONE_MIXES):
            field = draw_cell_field(side, side, mix, "her2", mpp, seed=100 + index)
            table = detect_cells(
                lambda x, y, w, h, f=field: f.rgb[y : y + h, x : x + w], (0, 0, side, side), mpp,
                profile,
            )  # fmt: skip
            cells = Cells(table, class_of_cells(table, profile), "her2", mpp)
            detected = np.column_stack([table.x, table.y]) * mpp
            truth_xy = np.column_stack([field.x, field.y]) * mpp
            matching = match_cells(detected, truth_xy, MATCH_DISTANCE_UM)
            total += class_confusion(matching, cells.classes, field.classes)
            truth = 100.0 * np.mean(field.classes > 0)
            fields.append({
                "mix": list(mix),
                "positive_percent_error": round(100.0 * np.mean(cells.classes > 0) - truth, 2),
                "category": decide(cells).category,
            })  # fmt: skip
        out[f"mpp_{mpp}"] = {
            "class_accuracy": round(float(np.trace(total) / total.sum()), 3),
            "unstained_called_stained": round(float(total[0, 1:].sum() / total[0].sum()), 3),
            "confusion": total.tolist(),
            "fields": fields,
        }
    return out


def _real_truth(name: str, size_threshold: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The IHC panel and the true nucleus centres and positivity of a DeepLIIF field.

    Panel 6 paints DAB-positive nuclei red and negative ones blue inside green outlines;
    a nucleus is a red or blue component of at least ``size_threshold`` px (the dataset's
    own size threshold for its counts).
    """
    image = cv2.cvtColor(cv2.imread(str(REAL / f"{name}.png")), cv2.COLOR_BGR2RGB)
    ihc, seg = np.ascontiguousarray(image[:, :512]), image[:, 2560:3072].astype(int)
    red, green, blue = seg[..., 0], seg[..., 1], seg[..., 2]
    centres, positive = [], []
    for mask, is_positive in (
        ((red > 150) & (green < 100) & (blue < 100), True),
        ((blue > 150) & (red < 100) & (green < 100), False),
    ):
        labels, n = ndimage.label(mask)
        index = np.arange(1, n + 1)
        areas = ndimage.sum(mask, labels, index)
        for area, (y, x) in zip(areas, ndimage.center_of_mass(mask, labels, index), strict=True):
            if area >= size_threshold:
                centres.append((x, y))
                positive.append(is_positive)
    return ihc, np.array(centres, float), np.array(positive, bool)


def _real_field(name: str, metrics: dict, profile) -> dict:
    ihc, truth_xy, truth_positive = _real_truth(name, metrics["size_thresh"])
    table = detect_cells(
        lambda x, y, w, h: ihc[y : y + h, x : x + w], (0, 0, 512, 512), REAL_MPP, profile
    )
    classes = class_of_cells(table, profile)
    detected = np.column_stack([table.x, table.y])
    matching = match_cells(detected * REAL_MPP, truth_xy * REAL_MPP, MATCH_DISTANCE_UM)
    positive = 100.0 * np.count_nonzero(classes) / max(1, len(classes))
    pairs = matching.pairs
    agree = (classes[pairs[:, 0]] > 0) == truth_positive[pairs[:, 1]]
    return {
        "detection": {k: round(v, 3) for k, v in matching.to_dict().items()},
        "count_error": len(table) - metrics["num_total"],
        "positive_percent": {
            "truth": metrics["percent_pos"],
            "detected": round(positive, 1),
            "error": round(positive - metrics["percent_pos"], 1),
        },
        "matched_positivity_agreement": round(float(agree.mean()), 3) if len(agree) else None,
    }


def real() -> dict:
    """The two real Ki67 fields, with the current defaults and QuPath's detection defaults."""
    if not (REAL / "metrics.json").is_file():
        return {"skipped": f"{REAL} is absent; the real fields are only read when present"}
    metrics = json.loads((REAL / "metrics.json").read_text())
    current = load_profile(None, "ki67")
    qupath = current.model_copy(update={"nucleus": QUPATH_DETECTION})
    out = {"mpp_assumed": REAL_MPP, "match_distance_um": MATCH_DISTANCE_UM}
    for label, profile in (("defaults", current), ("qupath_detection", qupath)):
        out[label] = {
            name: _real_field(name, metrics[name], profile) for name in ("Bladder1", "Lung1")
        }
    return out


def background(folder: Path, size: tuple[int, int]) -> dict:
    """A whole synthetic slide in a background job: progress, time, and a cancel."""
    labels = write_cell_cohort(folder / "slide", 1, "her2", 7, size)
    case = labels.parent / "case000"
    reports = []
    job = Job(lambda context: evaluate_case(case, context=context), "cells", background=True)
    job.on_progress(lambda progress: reports.append((progress.done, progress.total)))
    start = time.perf_counter()
    result = job.start().wait(600)
    out = {
        "slide_px": list(size),
        "n_cells": result["n_cells"],
        "f1": round(result["detection"]["f1"], 4),
        "category": result["category"],
        "seconds": round(time.perf_counter() - start, 2),
        "progress_reports": len(reports),
        "last_progress": list(reports[-1]) if reports else None,
    }
    started = threading.Event()
    job = Job(lambda context: evaluate_case(case, context=context), "cells", background=True)
    job.on_progress(lambda progress: started.set())
    job.start()
    started.wait(600)
    job.cancel()
    cancelled = time.perf_counter()
    try:
        job.wait(600)
    except Exception as exc:  # the job's Cancelled, reported as its class name
        out["cancel_error"] = type(exc).__name__
    out["cancel"] = {
        "state": job.state,
        "stopped_within_s": round(time.perf_counter() - cancelled, 2),
    }
    return out


def _size(text: str) -> tuple[int, int]:
    width, height = text.lower().split("x")
    return int(width), int(height)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=5, help="cases per synthetic cohort")
    parser.add_argument("--seed", type=int, default=2026, help="held-out cohort seed")
    parser.add_argument("--size", type=_size, default=(3000, 2400), help="cohort slide WxH")
    parser.add_argument("--slide", type=_size, default=(8000, 6000), help="background slide WxH")
    parser.add_argument("--speed-only", action="store_true", help="only the speed part")
    args = parser.parse_args()
    result = {"cpu_count": os.cpu_count(), "speed": speed()}
    if args.speed_only:
        print(json.dumps(result, indent=2))
        return
    with tempfile.TemporaryDirectory() as tmp:
        result["synthetic"] = synthetic(Path(tmp), args.cases, args.seed, args.size)
        result["clones"] = clones()
        result["real"] = real()
        result["background"] = background(Path(tmp), args.slide)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
