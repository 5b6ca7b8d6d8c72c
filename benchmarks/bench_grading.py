"""IHC grading time on the viewer's demo case: what *Grade IHC* and *Grad-CAM here* cost.

Usage: .venv/bin/python benchmarks/bench_grading.py [--device auto] [--region 2048]
Grades the demo case's IHC slide (12000 x 9000 px, tumor-mask patches on the
half-overlapping grid) with the demo bundle, then computes Grad-CAM over a
``region`` x ``region`` level-0 square at the slide centre (every tissue patch
overlapping it), as the panel does for the view. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch

from her2viewer.analysis.contract import analyse_path
from her2viewer.analysis.grade import GradeOptions, analyse_grade, gradcam_slide
from her2viewer.demo import ensure_demo_case
from her2viewer.devices import choose_device
from her2viewer.slide import open_slide


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="auto")
    parser.add_argument("--region", type=int, default=2048)
    args = parser.parse_args()
    slide = ensure_demo_case() / "ihc.svs"
    with open_slide(slide) as opened:
        cx, cy = opened.info.width / 2, opened.info.height / 2
    half = args.region / 2
    start = time.perf_counter()
    grading = analyse_path(analyse_grade, slide, None, GradeOptions(device=args.device), None)
    graded = time.perf_counter() - start
    start = time.perf_counter()
    cam = gradcam_slide(
        slide, device=args.device, tumor="none", rect=(cx - half, cy - half, cx + half, cy + half)
    )
    explained = time.perf_counter() - start
    print(
        json.dumps(
            {
                "benchmark": "grading",
                "device": str(choose_device(args.device)),
                "torch_threads": torch.get_num_threads(),
                "load_average_1min": round(os.getloadavg()[0], 2),
                "grade": {
                    "patches": len(grading.probs),
                    "seconds": round(graded, 2),
                    "patches_per_s": round(len(grading.probs) / graded, 1),
                    "slide_grade": grading.grade,
                },
                "gradcam_region": {
                    "region_px": args.region,
                    "patches": len(cam.patch_probs),
                    "seconds": round(explained, 2),
                    "patches_per_s": round(len(cam.patch_probs) / explained, 1),
                },
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
