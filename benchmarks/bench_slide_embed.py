"""Time ``her2viewer embed`` (a full-size slide encoder, random weights) on one slide of N tiles.

The slide is a features h5 of N random features of the encoder's tile encoder (768-d
CONCH v1.5 for TITAN, 1536-d Prov-GigaPath for gigapath_slide) on a roughly square patch
of the tile grid it was trained on (512 or 256 px at 20x, a 40x slide), 10 % of its cells
left empty, written as ``extract`` writes them. The verb runs in-process as a user runs
it (reading the file, building the grid, embedding, writing the output), ``--repeats``
times after one warm-up; the median wall time is reported with the process CPU time, the
torch threads and the load average.

Usage: python benchmarks/bench_slide_embed.py [--encoder titan|gigapath_slide] [--tiles 2000]
       [--repeats 3] [--device cpu]; prints JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import torch

from her2viewer.cli.main import main
from her2viewer.features.slide_encoders import (
    SlideEncoderSpec,
    slide_encoder_names,
    slide_spec_for,
)


def write_slide(path: Path, tiles: int, spec: SlideEncoderSpec) -> None:
    """Features of ``spec``'s tile encoder: ``tiles`` tiles on a square-ish grid with gaps."""
    rng = np.random.default_rng(0)
    side = int(np.ceil(np.sqrt(tiles / 0.9)))
    cells = np.sort(rng.choice(side * side, size=tiles, replace=False))
    size0 = 2 * spec.patch_size  # tiles cut at 20x from a 40x slide
    coords = np.stack([cells % side, cells // side], 1).astype(np.int64) * size0 + 5000
    features = rng.normal(size=(tiles, spec.tile_dim)).astype(np.float32)
    with h5py.File(path, "w") as h5:
        h5.create_dataset("features", data=features)
        data = h5.create_dataset("coords", data=coords)
        data.attrs.update(
            {"patch_size": spec.patch_size, "patch_size_level0": size0, "magnification": 20.0}
        )
        description = json.dumps({"name": spec.tile_encoder})
        h5.attrs.update({"encoder": spec.tile_encoder, "encoder_description": description})


def time_embed(encoder: str, tiles: int, repeats: int, device: str) -> dict:
    """Median wall and CPU seconds of ``embed`` on one slide of ``tiles`` tiles."""
    spec = slide_spec_for(encoder)
    with tempfile.TemporaryDirectory() as folder:
        slide, out = Path(folder) / "slide.h5", Path(folder) / "emb.h5"
        write_slide(slide, tiles, spec)
        argv = ["embed", str(slide), "--encoder", encoder, "--random-seed", "0"]
        argv += ["--device", device, "-o", str(out)]
        walls, cpus = [], []
        for _ in range(repeats + 1):
            wall, cpu = time.perf_counter(), time.process_time()
            with contextlib.redirect_stdout(io.StringIO()):
                assert main(argv) == 0
            walls.append(time.perf_counter() - wall)
            cpus.append(time.process_time() - cpu)
    return {
        "tiles": tiles,
        "encoder": f"{encoder} (full size, random weights): {spec.architecture}",
        "device": device,
        "repeats": repeats,
        "median_wall_s": round(statistics.median(walls[1:]), 2),
        "median_cpu_s": round(statistics.median(cpus[1:]), 2),
        "each_wall_s": [round(t, 2) for t in walls[1:]],
        "torch_threads": torch.get_num_threads(),
        "load_average": [round(v, 2) for v in os.getloadavg()],
    }


def main_cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoder", default="titan", choices=slide_encoder_names())
    parser.add_argument("--tiles", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    print(json.dumps(time_embed(args.encoder, args.tiles, args.repeats, args.device), indent=2))


if __name__ == "__main__":
    main_cli()
