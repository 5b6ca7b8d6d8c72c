"""Train the demo CLAM bundle shipped in ``resources/`` on a synthetic cohort.

Usage: ``python -m her2viewer.training.demo_clam OUT_BUNDLE [--work DIR] [--cases 28]``

Writes a synthetic paired cohort, extracts ``resnet50_trunc`` features of its H&E
slides (ImageNet weights from torchvision's cache when present, otherwise fixed
random weights with seed 0 -- recorded in ``bundle.json``), cross-validates CLAM
with seed 000's recipe on the development cases, evaluates every fold model on
held-out cases, and saves the fold with the lowest validation loss. Features are
standardised (stored in the model): untrained encoders give large, common-mode
features that CLAM's recipe otherwise fits poorly. Every stage
is skipped when its output exists, so an interrupted run continues. The bundle
demonstrates the machinery on synthetic data; it makes no clinical claim.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np
import torch

from her2viewer.errors import ModelError
from her2viewer.features.encoders import build_encoder, torchvision_cache_file
from her2viewer.features.engine import extract_features
from her2viewer.features.store import h5_path
from her2viewer.models.checks import demo_manifest
from her2viewer.models.clam import load_clam, predict, save_clam_bundle
from her2viewer.outputs import write_text_atomic
from her2viewer.slide import open_slide
from her2viewer.slide.synthetic import write_cohort
from her2viewer.stats.metrics import auc_delong
from her2viewer.tissue import make_patch_grid, segment_tissue
from her2viewer.training.clam_train import ClamTrainConfig, cross_validate
from her2viewer.training.datasets import Cohort, load_cohort

SLIDE_SIZE = (3000, 2400)
NOTE = (
    "Demo model trained on a small SYNTHETIC cohort (her2viewer.slide.synthetic); it "
    "demonstrates the software and makes no clinical claim."
)


def demo_encoder():
    """ImageNet resnet50_trunc when cached locally, else fixed random weights (seed 0)."""
    if torchvision_cache_file().is_file():
        return build_encoder("resnet50_trunc")
    return build_encoder("resnet50_trunc", random_seed=0)


def extract_cohort(labels_csv: Path, features_dir: Path, encoder, workers: int = 2) -> None:
    """Extract the H&E features of every case not yet done (20x, 256 px patches)."""
    with open(labels_csv, newline="") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        target = h5_path(features_dir, row["case_id"])
        if target.exists():
            continue
        with open_slide(labels_csv.parent / row["he_path"]) as slide:
            grid = make_patch_grid(slide, segment_tissue(slide), magnification=20.0, patch_size=256)
            result = extract_features(slide, grid, encoder, target, device="auto", workers=workers)
        print(
            f"{row['case_id']}: {result.n_patches} patches, {result.patches_per_s:.1f}/s",
            flush=True,
        )


def split_cohort(cohort: Cohort, n_test: int) -> tuple[Cohort, Cohort]:
    """Hold out ``n_test`` cases, balanced over the classes, by case order."""
    labels = cohort.labels
    test = set()
    for cls in np.unique(labels):
        test.update(np.flatnonzero(labels == cls)[-(n_test // len(np.unique(labels))) :].tolist())

    def part(keep):
        bags = [b for i, b in enumerate(cohort.bags) if (i in test) == keep]
        return Cohort(bags, cohort.class_names, cohort.encoder, cohort.patch_attrs)

    return part(False), part(True)


def heldout_probabilities(model, cohort: Cohort) -> np.ndarray:
    """A model's positive-class probability per bag."""
    return np.array([predict(model, b.features).probabilities[1] for b in cohort.bags])


def build_demo(out: Path, work: Path, n_cases: int, n_test: int, folds: int) -> dict:
    """Run every stage and return the report written next to the bundle."""
    labels = work / "cohort" / "labels.csv"
    if not labels.exists():
        write_cohort(work / "cohort", n_cases=n_cases, seed=2024, size=SLIDE_SIZE, workers=2)
    encoder = demo_encoder()
    extract_cohort(labels, work / "features", encoder)
    dev, test = split_cohort(load_cohort(work / "features", labels), n_test)
    config = ClamTrainConfig(seed=0, standardize=True)
    torch.set_num_threads(1)  # one small bag per step: extra threads only add overhead
    summary = cross_validate(
        dev, work / "cv", config, n_folds=folds, on_epoch=_quiet_epoch, provenance={"note": NOTE}
    )
    fold_probs = [
        heldout_probabilities(load_clam(work / "cv" / f"fold_{k}")[0], test) for k in range(folds)
    ]
    fold_auc = [auc_delong(test.labels == 1, p).value for p in fold_probs]
    best = min(summary["folds"], key=lambda f: f["val_loss"])["fold"]
    called, positive = fold_probs[best] >= 0.5, test.labels == 1
    at_half = {
        "accuracy": float((called == positive).mean()),
        "sensitivity": float(called[positive].mean()),
        "specificity": float((~called[~positive]).mean()),
    }
    model, meta = load_clam(work / "cv" / f"fold_{best}")
    meta["provenance"].update(
        {
            "note": NOTE,
            "cohort": f"write_cohort(n_cases={n_cases}, seed=2024, size={SLIDE_SIZE})",
            "heldout_slides": [b.slide_id for b in test.bags],
            "heldout_auc": fold_auc[best],
            "heldout_at_0.5": at_half,
            "script": "python -m her2viewer.training.demo_clam",
        }
    )
    meta.pop("config", None)
    meta |= {"note": NOTE, **demo_manifest("H&E")}
    save_clam_bundle(out, model, meta)
    report = {
        "shipped_fold": best,
        "heldout_auc_shipped": fold_auc[best],
        "heldout_auc_per_fold": fold_auc,
        "heldout_n": len(test.bags),
        "heldout_at_0.5": at_half,
        "heldout_probabilities": {
            b.slide_id: float(p) for b, p in zip(test.bags, fold_probs[best], strict=True)
        },
        "cv_pooled_test": summary["pooled_test"],
        "encoder": encoder.describe(),
    }
    write_text_atomic(work / "demo_report.json", json.dumps(report, indent=2))
    return report


def _quiet_epoch(record: dict) -> None:
    if record["epoch"] % 25 == 0:
        print(
            f"fold {record['fold']} epoch {record['epoch']}: val loss {record['val_loss']:.4f}"
            f" val AUC {record['val_auc']:.3f}",
            flush=True,
        )


def main(argv=None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="bundle folder to write")
    parser.add_argument("--work", type=Path, default=Path("demo_clam_work"))
    parser.add_argument("--cases", type=int, default=28)
    parser.add_argument("--test-cases", type=int, default=8)
    parser.add_argument("--folds", type=int, default=4)
    args = parser.parse_args(argv)
    if args.cases - args.test_cases < 2 * args.folds:
        raise ModelError("Too few development cases for the folds asked for.")
    print(
        json.dumps(
            build_demo(args.out, args.work, args.cases, args.test_cases, args.folds), indent=2
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
