"""Segmentation + patching time on a 100000 x 80000 Aperio slide.

Usage: .venv/bin/python benchmarks/bench_tissue.py [--width 100000 --height 80000]

The slide is written once into a temporary folder by ``large_slide.write_large_slide``
(pre-encoded tiles at the high-resolution levels, so it takes seconds). Segmentation
reads only a low level, which is the point measured.
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from large_slide import write_large_slide

from her2viewer.slide import open_slide
from her2viewer.tissue import make_patch_grid, segment_tissue


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--width", type=int, default=100000)
    parser.add_argument("--height", type=int, default=80000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "large.svs"
        start = time.perf_counter()
        write_large_slide(path, args.width, args.height)
        build = time.perf_counter() - start
        times = []
        for _ in range(3):
            start = time.perf_counter()
            with open_slide(path) as slide:
                seg = segment_tissue(slide)
                grid = make_patch_grid(slide, seg, magnification=20, patch_size=256)
            times.append(time.perf_counter() - start)
        print(
            json.dumps(
                {
                    "benchmark": "segment_and_patch",
                    "size": [args.width, args.height],
                    "levels": [[lv.width, lv.height] for lv in slide.info.levels],
                    "seg_level": seg.seg_level,
                    "contours": len(seg.contours),
                    "patches_20x_256": len(grid),
                    "seconds_open_segment_patch": [round(t, 3) for t in times],
                    "seconds_median": round(sorted(times)[1], 3),
                    "slide_build_seconds": round(build, 1),
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
