"""Region export benchmark: time and peak memory of ``export_region`` to a tiled TIFF. Prints JSON.

A square region (20000 x 20000 px by default) at full resolution from the centre of the
100000 x 80000 Aperio SVS of ``large_slide.write_large_slide`` (written once into the temp
folder), then the same for a region a quarter as wide: if the TIFF is written tile by tile,
the peak memory of both is about the same (it does not grow with the region).

    nice .venv/bin/python benchmarks/bench_export.py [--size 20000] [--downsample 1]

Peak memory is Python's own allocations, numpy's included (``tracemalloc``), and the
process's resident high-water mark (``ru_maxrss``) over its value before the first export.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time
import tracemalloc
from pathlib import Path

from large_slide import write_large_slide

from her2viewer.overlay.region import export_region, output_size
from her2viewer.slide import open_slide

SLIDE_SIZE = (100_000, 80_000)


def max_rss_mb() -> float:
    """The process's resident-memory high-water mark in MB (Linux: ru_maxrss is in kB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(slide, side: int, downsample: float, out: Path) -> dict:
    """Export a ``side`` px square from the slide's centre; its time, memory and file size."""
    x = (slide.info.width - side) // 2
    y = (slide.info.height - side) // 2
    rect = (x, y, side, side)
    tracemalloc.start()
    start = time.perf_counter()
    export_region(slide, rect, downsample, out)
    seconds = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    width, height = output_size(rect, downsample)
    result = {
        "region_level0_px": [side, side],
        "output_px": [width, height],
        "seconds": round(seconds, 2),
        "megapixels_per_s": round(width * height / 1e6 / seconds, 1),
        "tracemalloc_peak_mb": round(peak / 2**20, 1),
        "max_rss_mb": round(max_rss_mb(), 1),
        "file_mb": round(out.stat().st_size / 2**20, 1),
        "raw_mb": round(width * height * 3 / 2**20, 1),
    }
    out.unlink()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=20_000, help="side of the square region")
    parser.add_argument("--downsample", type=float, default=1.0)
    parser.add_argument("--slide", type=Path, help="a large slide instead of the written one")
    args = parser.parse_args()
    path = args.slide or Path(tempfile.gettempdir()) / "her2viewer_bench_100000x80000_40x.svs"
    if not path.exists():
        write_large_slide(path, *SLIDE_SIZE, magnification=40)
    out = Path(tempfile.mkdtemp(prefix="her2viewer_bench_export_")) / "region.tif"
    result = {"slide": str(path), "cpus": os.cpu_count(), "max_rss_start_mb": round(max_rss_mb())}
    with open_slide(path) as slide:
        result["small"] = measure(slide, args.size // 4, args.downsample, out)
        result["large"] = measure(slide, args.size, args.downsample, out)
    growth = result["large"]["tracemalloc_peak_mb"] - result["small"]["tracemalloc_peak_mb"]
    result["peak_growth_mb_for_16x_pixels"] = round(growth, 1)
    result["memory_bounded"] = bool(growth < 64)
    out.parent.rmdir()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
