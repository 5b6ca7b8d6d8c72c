"""Time ``her2viewer embed`` (full-size TITAN, random weights) on one slide of N tiles; prints JSON.

The slide is a features h5 of N CONCH-sized (768-d) random features on a roughly square
patch of a 512 px grid with 10 % of its cells left empty, written as ``extract`` writes
them; the verb runs in-process as a user runs it (reading the file, building the grid,
embedding, writing the output), ``--repeats`` times after one warm-up, and the median
wall time is reported with the process CPU time, the torch threads and the load average.

Usage: python benchmarks/bench_slide_embed.py [--tiles 2000] [--repeats 3] [--device cpu]
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


def write_slide(path: Path, tiles: int) -> None:
    """A conch_v1_5 features file of ``tiles`` tiles on a square-ish grid with gaps."""
    rng = np.random.default_rng(0)
    side = int(np.ceil(np.sqrt(tiles / 0.9)))
    cells = np.sort(rng.choice(side * side, size=tiles, replace=False))
    coords = np.stack([cells % side, cells // side], 1).astype(np.int64) * 1024 + 5000
    with h5py.File(path, "w") as h5:
        h5.create_dataset("features", data=rng.normal(size=(tiles, 768)).astype(np.float32))
        data = h5.create_dataset("coords", data=coords)
        data.attrs.update({"patch_size": 512, "patch_size_level0": 1024})
        h5.attrs.update({"encoder": "conch_v1_5", "encoder_description": '{"name": "conch_v1_5"}'})


def time_embed(tiles: int, repeats: int, device: str) -> dict:
    """Median wall and CPU seconds of ``embed`` on one slide of ``tiles`` tiles."""
    with tempfile.TemporaryDirectory() as folder:
        slide, out = Path(folder) / "slide.h5", Path(folder) / "emb.h5"
        write_slide(slide, tiles)
        argv = ["embed", str(slide), "--encoder", "titan", "--random-seed", "0"]
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
        "encoder": "titan (full, 6 blocks, random weights)",
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
    parser.add_argument("--tiles", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    print(json.dumps(time_embed(args.tiles, args.repeats, args.device), indent=2))


if __name__ == "__main__":
    main_cli()
