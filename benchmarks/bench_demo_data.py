"""Synthetic case write time and peak memory (one paired H&E/IHC case).

Usage: .venv/bin/python benchmarks/bench_demo_data.py [WIDTHxHEIGHT]   (default 20000x15000)
Runs the write in a child process so that its peak resident memory is its own.
Prints one JSON object.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time

CHILD = (
    "import sys; from her2viewer.slide.synthetic import CaseSpec, write_case; "
    "w, h = map(int, sys.argv[2].split('x')); "
    "write_case(CaseSpec('bench', 3, w, h, seed=0, index=0), sys.argv[1])"
)


def main() -> None:
    size = sys.argv[1] if len(sys.argv) > 1 else "20000x15000"
    width, height = map(int, size.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", CHILD, tmp, size], check=True)
        seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    level0_mb = width * height * 3 / 2**20
    print(
        json.dumps(
            {
                "benchmark": "demo_data_write",
                "size": [width, height],
                "slides": 2,
                "seconds": round(seconds, 2),
                "peak_rss_mb": round(peak_mb, 1),
                "one_level0_rgb_mb": round(level0_mb, 1),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
