"""HER2Net prediction time per 1000 tissue tiles; prints JSON.

``python benchmarks/bench_her2net.py [--threads 1] [--full-tiles 2]``

* ``demo_slide``: the whole slide pipeline (tile decoding in threads, background
  filter, tumor detector, five sub-classifiers, integrated classifier, masks) with
  the demo bundle (tiles of 512 px at 20x read at 32 px) on a synthetic slide.
* ``demo_networks``: the networks alone on 1000 tiles in batches of 32.
* ``seed_size_networks``: the seed's sizes (U-Net width 64 depth 4, five ResNet-50,
  512 px input, random weights) on a few tiles, scaled to 1000.

Runs on ``--device`` (auto: CUDA when present). Batches are moved to the device and
tiles decode in reader threads while the previous batch runs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from her2viewer.analysis.her2net import Her2NetOptions, predict_slide
from her2viewer.devices import choose_device
from her2viewer.models.her2net.ensemble import IntegratedClassifier
from her2viewer.models.her2net.model import Her2NetModel, load_her2net
from her2viewer.models.her2net.networks import build_segmenter, build_tile_classifier
from her2viewer.slide import open_slide
from her2viewer.slide.synthetic import write_cohort


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_networks(model: Her2NetModel, n_tiles: int, batch: int) -> float:
    """Seconds for tumor masks and strong probabilities of ``n_tiles`` random tiles."""
    size = model.input_size
    tiles = np.random.default_rng(0).integers(0, 255, (batch, size, size, 3), dtype=np.uint8)
    model.tumor_probability(tiles[:2])  # warm-up
    _sync(model.device)
    start = time.perf_counter()
    done = 0
    while done < n_tiles:
        part = tiles[: min(batch, n_tiles - done)]
        model.tumor_probability(part)
        model.strong_probability(part)
        done += len(part)
    _sync(model.device)
    return time.perf_counter() - start


def seed_size_model(device: torch.device) -> Her2NetModel:
    """The seed's network sizes with random weights and a linear integrated classifier."""
    seg = build_segmenter({"arch": "unet", "width": 64, "depth": 4})
    classifiers = [build_tile_classifier({"arch": "resnet50", "seed": i}) for i in range(5)]
    linear = IntegratedClassifier(
        "lr", {"type": "linear"}, {"coef": np.ones(5), "intercept": np.array([-2.5])}
    )
    for m in (seg, *classifiers):
        m.to(device).to(memory_format=torch.channels_last).eval()
    meta = {"magnification": 4.0, "tile_size": 512, "input_size": 512}
    return Her2NetModel(meta, seg, classifiers, linear, device)


def main() -> None:
    """Measure and print the JSON report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--full-tiles", type=int, default=2, help="tiles for the seed sizes")
    parser.add_argument("--size", type=int, nargs=2, default=(8192, 6144))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = choose_device(args.device)
    report = {
        "device": str(device),
        "torch_threads": args.threads,
        "cpu_count": os.cpu_count(),
        "load_average_at_start": os.getloadavg()[0],
        "platform": platform.platform(),
        "gpu": torch.cuda.get_device_name(0)
        if device.type == "cuda"
        else "not measured: no GPU in this session",
    }
    demo = load_her2net(None, str(device))
    with tempfile.TemporaryDirectory() as tmp:
        labels = write_cohort(tmp, 1, 7, tuple(args.size))
        with open_slide(Path(labels).parent / "case000" / "he.svs") as slide:
            start = time.perf_counter()
            result = predict_slide(slide, demo, Her2NetOptions(batch_size=32))
            seconds = time.perf_counter() - start
    n = len(result.tiles)
    report["demo_slide"] = {
        "slide_size": list(args.size),
        "tissue_tiles": n,
        "classified_tiles": sum(t.classified for t in result.tiles),
        "seconds": seconds,
        "seconds_per_1000_tissue_tiles": 1000 * seconds / max(n, 1),
    }
    net = time_networks(demo, 1000, 32)
    report["demo_networks"] = {"input_size": demo.input_size, "seconds_per_1000_tiles": net}
    full = seed_size_model(device)
    k = max(1, args.full_tiles)
    seconds = time_networks(full, k, min(k, 8))
    report["seed_size_networks"] = {
        "input_size": 512,
        "tiles_timed": k,
        "seconds_per_1000_tiles": 1000 * seconds / k,
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
