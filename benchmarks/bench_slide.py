"""Slide access speed: open time, read_region medians, tiles/s with 1 and 4 threads.

Usage: .venv/bin/python benchmarks/bench_slide.py [SLIDE ...]
Without arguments it measures the real CMU-1 SVS and a synthetic 8000x6000 case.
Prints one JSON object.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from her2viewer.slide import open_slide
from her2viewer.slide.synthetic import CaseSpec, write_case

REAL = Path(__file__).resolve().parents[1] / "tests" / "data" / "cmu-1-small-region.svs"


def _median_ms(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return round(1000 * statistics.median(times), 3)


def _tiles_per_second(slide, locations, threads: int) -> float:
    start = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda loc: slide.read_region(loc, 0, (256, 256)), locations))
    return round(len(locations) / (time.perf_counter() - start), 1)


def measure(path: Path) -> dict:
    """Measure one slide; random tile locations are fixed by a seed."""
    open_ms = _median_ms(lambda: open_slide(path).close(), 5)
    rng = np.random.default_rng(0)
    with open_slide(path) as slide:
        w, h = slide.info.width, slide.info.height
        spots = [
            (int(x), int(y))
            for x, y in zip(
                rng.integers(0, max(1, w - 1024), 200),
                rng.integers(0, max(1, h - 1024), 200),
                strict=True,
            )
        ]
        it256, it1024 = iter(spots), iter(spots)
        read256 = _median_ms(lambda: slide.read_region(next(it256), 0, (256, 256)), 100)
        read1024 = _median_ms(lambda: slide.read_region(next(it1024), 0, (1024, 1024)), 30)
    # fresh handles so that OpenSlide's tile cache does not favour the second run
    tiles = [
        (int(x), int(y))
        for x, y in zip(rng.integers(0, w - 256, 400), rng.integers(0, h - 256, 400), strict=True)
    ]
    result = {
        "slide": str(path),
        "size": [w, h],
        "open_ms_median": open_ms,
        "read_region_256_ms_median": read256,
        "read_region_1024_ms_median": read1024,
    }
    for threads in (1, 4):
        with open_slide(path) as slide:
            result[f"tiles_per_s_{threads}_thread{'s' if threads > 1 else ''}"] = _tiles_per_second(
                slide, tiles, threads
            )
    return result


def main(argv: list[str]) -> None:
    paths = [Path(p) for p in argv]
    with tempfile.TemporaryDirectory() as tmp:
        if not paths:
            write_case(CaseSpec("bench", 3, 8000, 6000, seed=0, index=0), tmp)
            paths = [REAL, Path(tmp) / "bench" / "he.svs"]
        print(
            json.dumps(
                {"benchmark": "slide_access", "results": [measure(p) for p in paths]}, indent=2
            )
        )


if __name__ == "__main__":
    main(sys.argv[1:])
