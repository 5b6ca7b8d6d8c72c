"""Hit-testing and visible-box queries of geometry.SpatialIndex on many objects.

Usage: .venv/bin/python benchmarks/bench_hit_test.py [N_POLYGONS] [N_POINTS]
(defaults 10000 and 100000). Builds random polygons (small cells to large regions
on a 100,000 px slide) and random points, then times 1000 clicks (at_point with a
4 px tolerance) and 200 visible-box queries (a 1600x1000 screen at downsample 1, 4
and 16) on each. Prints one JSON object: index build seconds, median and p95
milliseconds per click and per box query. The target is under 1 ms per click with
10,000 objects.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np
import shapely

from her2viewer.geometry.index import SpatialIndex
from her2viewer.geometry.shapes import ellipse

SLIDE = 100_000.0
CLICKS = 1000
BOXES = 200


def random_polygons(rng: np.random.Generator, n: int) -> list:
    """Return ``n`` ellipses of 24 vertices, radii log-uniform from 5 to 2000 px."""
    centres = rng.uniform(0, SLIDE, (n, 2))
    radii = np.exp(rng.uniform(np.log(5), np.log(2000), (n, 2)))
    pairs = zip(centres, radii, strict=True)
    return [ellipse(cx, cy, rx, ry, segments=24) for (cx, cy), (rx, ry) in pairs]


def timings_ms(call, arguments) -> dict:
    """Return the median and p95 milliseconds of ``call(*a)`` over ``arguments``."""
    times = []
    for args in arguments:
        start = time.perf_counter()
        call(*args)
        times.append((time.perf_counter() - start) * 1e3)
    return {"median_ms": float(np.median(times)), "p95_ms": float(np.percentile(times, 95))}


def bench(geometries: list, rng: np.random.Generator) -> dict:
    """Return build time, click and box-query timings of one index."""
    start = time.perf_counter()
    index = SpatialIndex(geometries)
    build_s = time.perf_counter() - start
    clicks = [(x, y, 4.0) for x, y in rng.uniform(0, SLIDE, (CLICKS, 2))]
    hits = [len(index.at_point(*c)) for c in clicks]
    boxes = {}
    for downsample in (1, 4, 16):
        w, h = 1600 * downsample, 1000 * downsample
        corners = rng.uniform(0, SLIDE, (BOXES, 2))
        queries = [(x, y, x + w, y + h) for x, y in corners]
        boxes[f"box_downsample_{downsample}"] = timings_ms(index.in_box, queries) | {
            "mean_objects": float(np.mean([len(index.in_box(*q)) for q in queries]))
        }
    return {
        "objects": len(geometries),
        "build_s": build_s,
        "click": timings_ms(index.at_point, clicks) | {"mean_hits": float(np.mean(hits))},
        **boxes,
    }


def main(argv: list[str]) -> dict:
    n_polygons = int(argv[0]) if argv else 10_000
    n_points = int(argv[1]) if len(argv) > 1 else 100_000
    rng = np.random.default_rng(0)
    polygons = bench(random_polygons(rng, n_polygons), rng)
    points = bench(list(shapely.points(rng.uniform(0, SLIDE, (n_points, 2)))), rng)
    return {
        "benchmark": "hit_test",
        "shapely": shapely.__version__,
        "polygons": polygons,
        "points": points,
        "click_under_1ms_10k": polygons["click"]["median_ms"] < 1.0,
    }


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1:]), indent=2))
