"""Train the demo patch-grading bundle shipped in ``resources/models/patch_grading_demo``.

Usage: ``python scripts/train_grading_demo.py [--out DIR] [--work DIR] [--cases 32]``

Writes synthetic cohorts (IHC scores 0-3, 3000 x 2400 px) with two texture seeds
(2024, 2027: cell layouts differ, so the grade head cannot learn one texture), trains the
``linear-head`` recipe of :func:`her2viewer.training.grade_train.train_cohort` (ResNet34
with fixed random weights from seed 0 -- only the head is stored -- at 128 px input,
tumor-mask patches, keep-DAB Macenko), with patient-level splits, then grades every
slide of a cohort written with a third texture seed (2025) and the viewer's demo case
(seed 2026, IHC 2+) as external tests.
Prints the held-out figures as JSON and writes them beside the bundle. The bundle
demonstrates the machinery on synthetic data; it makes no clinical claim.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import numpy as np

from her2viewer.analysis.contract import analyse_path
from her2viewer.analysis.grade import GradeOptions, analyse_grade
from her2viewer.demo import ensure_demo_case
from her2viewer.models.checks import demo_manifest
from her2viewer.models.patch_data import SCORE_NAMES, grading_metrics, read_cohort
from her2viewer.paths import RESOURCES_DIR
from her2viewer.slide.synthetic import load_truth, write_cohort
from her2viewer.training.grade_train import train_cohort

SLIDE_SIZE = (3000, 2400)
#: Grading on the CPU, as the demo bundle is trained.
CPU = GradeOptions(device="cpu")
SCORES = (0, 1, 2, 3)
NOTE = (
    "Demo model trained on a small SYNTHETIC cohort (her2viewer.slide.synthetic); it "
    "demonstrates the software and makes no clinical claim."
)


def cohort(folder: Path, n_cases: int, seed: int) -> Path:
    """``labels.csv`` of a synthetic cohort, written unless it exists."""
    labels = folder / "labels.csv"
    if not labels.exists():
        write_cohort(folder, n_cases=n_cases, seed=seed, size=SLIDE_SIZE)
    return labels


def merged_cohort(work: Path, n_cases: int, seeds: list[int]) -> Path:
    """One ``labels.csv`` over a cohort per seed (case and patient ids prefixed by the seed)."""
    out = work / "labels.csv"
    with out.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["case_id", "ihc_path", "ihc_score", "patient_id"])
        for seed in seeds:
            labels = cohort(work / f"cohort_{seed}", n_cases, seed)
            for row in csv.DictReader(labels.open()):
                writer.writerow(
                    [f"s{seed}_{row['case_id']}", f"cohort_{seed}/{row['ihc_path']}",
                     row["ihc_score"], f"s{seed}_{row['patient_id']}"]
                )  # fmt: skip
    return out


def demo_case_check(bundle: Path) -> dict:
    """Grade the viewer's demo case IHC (what *Grade IHC* shows in ``make run``)."""
    case = ensure_demo_case()
    result = analyse_path(analyse_grade, case / "ihc.svs", bundle, CPU, None)
    return {
        "truth": SCORE_NAMES[load_truth(case)["ihc_score"]],
        "grade": result.grade,
        "patches": len(result.probs),
        "mean_probability": dict(
            zip(result.classes, result.mean_probability.round(4).tolist(), strict=True)
        ),
    }


def external_test(bundle: Path, labels: Path) -> dict:
    """Grade every slide of another cohort as ``grade predict`` does; slide-level metrics."""
    cases = read_cohort(labels)
    results = [analyse_path(analyse_grade, c.path, bundle, CPU, None) for c in cases]
    truth = [SCORES.index(c.score) for c in cases]
    probs = np.stack([r.mean_probability for r in results])
    metrics = grading_metrics(truth, probs, [SCORE_NAMES[s] for s in SCORES])
    return {
        "slides": len(cases),
        "slide_macro_auc": metrics.macro_auc,
        "slide_per_class_auc": {k: v["auc"] for k, v in metrics.per_class_auc.items()},
        "slide_accuracy": metrics.accuracy,
        "slide_confusion": metrics.confusion,
        "grades": {
            c.case_id: [SCORE_NAMES[c.score], r.grade] for c, r in zip(cases, results, strict=True)
        },
    }


def main(argv=None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=RESOURCES_DIR / "models" / "patch_grading_demo")
    parser.add_argument("--work", type=Path, default=Path("grading_demo_work"))
    parser.add_argument("--cases", type=int, default=32, help="cases per texture seed")
    parser.add_argument("--seeds", default="2024,2027", help="texture seeds of the cohorts")
    parser.add_argument("--external-cases", type=int, default=8)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    seeds = [int(s) for s in args.seeds.split(",")]
    labels = merged_cohort(args.work, args.cases, seeds)
    provenance = {
        "cohort": [
            f"write_cohort(n_cases={args.cases}, seed={s}, size={SLIDE_SIZE})" for s in seeds
        ],
        "script": "python scripts/train_grading_demo.py",
    }
    meta = train_cohort(
        labels, args.out, scores=SCORES, input_size=128, seed=0, limit=48, step=128,
        device="cpu", log=lambda line: print(line, flush=True),
        extra={"note": NOTE, "demo": provenance, **demo_manifest("HER2 IHC")},
    )  # fmt: skip
    report = {
        "bundle": args.out.name,
        "note": NOTE,
        **provenance,
        "recipe": meta["provenance"]["recipe"],
        "arch": meta["arch"],
        "input_size": meta["input_size"],
        "backbone": meta["backbone"],
        "head": meta["head"],
        "patches": meta["provenance"]["patches"],
        "split_patients": meta["provenance"]["split_patients"],
        "heldout": {
            n: {
                "patch_macro_auc": m["patch"]["macro_auc"],
                "patch_per_class_auc": m["patch"]["per_class_auc"],
                "patch_accuracy": m["patch"]["accuracy"],
                "patch_confusion": m["patch"]["confusion"],
                "patch_adjacent_confusions": m["patch"]["adjacent_confusions"],
                "slide_macro_auc": m["slide"]["macro_auc"],
                "slide_accuracy": m["slide"]["accuracy"],
                "slide_confusion": m["slide"]["confusion"],
            }
            for n, m in meta["metrics"].items()
        },
    }
    if args.external_cases:
        external = cohort(args.work / "external", args.external_cases, 2025)
        report["external_test"] = {
            "cohort": f"write_cohort(n_cases={args.external_cases}, seed=2025, size={SLIDE_SIZE})",
            **external_test(args.out, external),
        }
    report["demo_case"] = demo_case_check(args.out)
    report["seconds"] = round(time.perf_counter() - start, 1)
    text = json.dumps(report, indent=2, default=float)
    args.out.with_name(args.out.name + "_report.json").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
