"""Verbs of the slide room: ``info`` and ``demo-data``."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from her2viewer.slide import open_slide
from her2viewer.slide.synthetic import write_cohort


def _size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"size must look like 8000x6000, got {text!r}") from exc
    return width, height


def register(subparsers) -> None:
    """Add the ``info`` and ``demo-data`` verbs."""
    info = subparsers.add_parser("info", help="print what is known about a slide")
    info.add_argument("slide", help="slide or image file")
    info.add_argument("--json", action="store_true", help="print JSON")
    info.add_argument("--properties", action="store_true", help="include raw vendor properties")
    info.set_defaults(func=run_info)

    demo = subparsers.add_parser("demo-data", help="write a synthetic paired H&E/IHC cohort")
    demo.add_argument("out", help="output folder")
    demo.add_argument("--cases", type=int, default=8, help="number of cases (default 8)")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    demo.add_argument("--size", type=_size, default=(8000, 6000), help="WxH (default 8000x6000)")
    demo.add_argument("--workers", type=int, default=1, help="cases written in parallel")
    demo.set_defaults(func=run_demo_data)


def _format_info(info) -> str:
    def mpp(value):
        return f"{value:.4f} um/px" if value else "unknown"

    power = f"{info.objective_power:g}x" if info.objective_power else "unknown"
    if not info.objective_power and info.objective_power_estimate:
        power += f" (estimated from mpp: {info.objective_power_estimate:g}x)"
    lines = [
        f"file:        {info.path}",
        f"vendor:      {info.vendor}",
        f"size:        {info.width} x {info.height} px",
        f"mpp:         {mpp(info.mpp_x)} x {mpp(info.mpp_y)}",
        f"objective:   {power}",
        f"associated:  {', '.join(info.associated_images) or 'none'}",
        f"fingerprint: {info.fingerprint}",
        "levels:",
    ]
    lines += [
        f"  {i}: {lv.width} x {lv.height} (downsample {lv.downsample:.3f})"
        for i, lv in enumerate(info.levels)
    ]
    return "\n".join(lines)


def run_info(args) -> int:
    """Print a slide's info as text or JSON."""
    with open_slide(args.slide) as slide:
        if args.json:
            print(json.dumps(slide.info.to_json_dict(with_properties=args.properties), indent=2))
        else:
            print(_format_info(slide.info))
    return 0


def run_demo_data(args) -> int:
    """Write a synthetic cohort and print where its labels are."""
    start = time.perf_counter()
    labels = write_cohort(Path(args.out), args.cases, args.seed, args.size, args.workers)
    elapsed = time.perf_counter() - start
    print(
        f"wrote {args.cases} synthetic cases to {labels.parent} in {elapsed:.1f} s; "
        f"labels: {labels}"
    )
    return 0
