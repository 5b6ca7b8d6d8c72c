"""Train the small HER2Net demo bundle on synthetic cohorts and measure it on held-out cases.

``python -m her2viewer.models.her2net.demo_bundle [--out resources/her2net_demo]``

Two synthetic cohorts are written (training, and held-out cases with a different
seed, so different textures). Tile labels come from the synthetic truth masks
through the manual-label CSV route (``case_id, x, y, label``), with the seed's rule
(strong when high-expression area >= 50% of the tile's tumor area); the tumor
detector learns from the truth tumor masks. The networks are shrunk and the tiles
read at reduced resolution so that training takes minutes on a 2-core CPU; all of
it is recorded in ``bundle.json``, with the held-out figures. Synthetic data: the
bundle demonstrates the machinery and makes no clinical claim.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

import torch

from her2viewer.jobs import run_inline
from her2viewer.models.bundle import load_bundle, save_bundle
from her2viewer.models.checks import demo_manifest
from her2viewer.models.her2net.data import (
    crop_mask,
    read_training_cohort,
    strong_label,
)
from her2viewer.models.her2net.evaluation import evaluate_cohort
from her2viewer.models.her2net.model import DEMO_BUNDLE, load_her2net
from her2viewer.models.her2net.training import Her2NetTrainConfig, train_her2net
from her2viewer.paths import cache_dir
from her2viewer.slide import open_slide
from her2viewer.slide.synthetic import write_cohort
from her2viewer.tables import write_csv
from her2viewer.tissue.masks import read_mask
from her2viewer.tissue.tiles import is_background, read_tile, tile_layout

NOTICE = (
    "Synthetic demo: trained on generated slides at reduced resolution with tiny networks; "
    "it demonstrates the HER2Net machinery and makes no clinical claim."
)


def demo_config() -> Her2NetTrainConfig:
    """The reduced settings of the demo bundle."""
    return Her2NetTrainConfig(
        magnification=20.0,
        tile_size=512,
        input_size=32,
        segmenter={"arch": "unet", "width": 8, "depth": 3},
        classifier={"arch": "resnet18", "width": 8},
        segmenter_epochs=25,
        classifier_epochs=20,
        patience=6,
        lr=1e-3,
        batch_size=32,
    )


def truth_tile_labels(labels_csv: Path, config: Her2NetTrainConfig, out_csv: Path) -> Path:
    """Write a manual-label CSV from the synthetic truth masks (the seed's 50% rule)."""
    rows = []
    for case in read_training_cohort(labels_csv):
        high = read_mask(case.he_path.parent / "high_expression_mask.png")
        tumor = read_mask(case.tumor_mask_path)
        ds = case.mask_downsample
        with open_slide(case.he_path) as slide:
            layout = tile_layout(slide, config.magnification, config.tile_size, config.input_size)
            for i, (x, y) in enumerate(layout.coords.tolist()):
                if is_background(read_tile(slide, layout, i), config.background_saturation):
                    continue
                label = strong_label(
                    crop_mask(tumor, ds, layout, i),
                    crop_mask(high, ds, layout, i),
                    config.tumor_min_fraction,
                    config.strong_fraction,
                )
                if label >= 0:
                    rows.append((case.case_id, x, y, "strong" if label else "weak"))
    return write_csv(out_csv, ["case_id", "x", "y", "label"], rows)


def _cohort(path: Path, n: int, seed: int, size: tuple[int, int]) -> Path:
    labels = path / "labels.csv"
    return labels if labels.is_file() else write_cohort(path, n, seed, size)


def build_demo(
    out: Path,
    work: Path,
    n_train: int,
    n_test: int,
    size: tuple[int, int],
    progress=None,
    labels: str = "truth",
) -> dict:
    """Write cohorts, train, evaluate on the held-out cohort and store the figures.

    ``labels`` is ``truth`` (manual-label CSV from the truth masks) or ``ihc`` (the
    registered, rule-scored IHC slides).

    Returns
    -------
    dict
        The held-out evaluation (also in ``bundle.json`` under ``evaluation``).
    """
    work.mkdir(parents=True, exist_ok=True)
    train_csv = _cohort(work / "train", n_train, 2, size)
    test_csv = _cohort(work / "heldout", n_test, 3, size)
    config = demo_config()
    if labels == "truth":
        config.tile_labels = str(truth_tile_labels(train_csv, config, work / "tile_labels.csv"))
    provenance = {
        **demo_manifest("H&E"),
        "notice": NOTICE,
        "reduced": "tiles of 512 px at 20x read at 32 px (1/16); U-Net width 8, ResNet-18 width 8",
        "cohorts": {"train": [n_train, 2, list(size)], "heldout": [n_test, 3, list(size)]},
    }
    run_inline(
        lambda ctx: train_her2net(train_csv, out, config, work / "stages", ctx, provenance),
        progress,
    )
    report = evaluate_cohort(test_csv, load_her2net(out, "cpu"))
    bundle = load_bundle(out)
    meta = dict(bundle.meta) | {"evaluation": {"heldout": _brief(report), "config": asdict(config)}}
    save_bundle(out, meta, bundle.tensors)
    return report


def _brief(report: dict) -> dict:
    keys = ("n_cases", "tumor_miou", "tumor_iou", "p_correlation", "auc_p", "confusion_matrix")
    return {k: report[k] for k in keys if k in report} | {
        "status_accuracy": report["status"]["accuracy"]
    }


def main(argv: list[str] | None = None) -> int:
    """Command line of the demo builder; prints the held-out report as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(DEMO_BUNDLE))
    parser.add_argument("--work", default=str(cache_dir() / "her2net_demo_work"))
    parser.add_argument("--train-cases", type=int, default=20)
    parser.add_argument("--test-cases", type=int, default=8)
    parser.add_argument("--size", type=int, nargs=2, default=(4096, 3072))
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument(
        "--labels", choices=("truth", "ihc"), default="truth", help="tile label source"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    report = build_demo(
        Path(args.out),
        Path(args.work),
        args.train_cases,
        args.test_cases,
        tuple(args.size),
        lambda p: print(f"{p.message} ({p.done}/{p.total})", file=sys.stderr, flush=True),
        args.labels,
    )
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
