"""Verb ``info``: what is known about a slide."""

from __future__ import annotations

import json

from her2viewer.cli.options import add_json_option
from her2viewer.slide import open_slide


def register(subparsers) -> None:
    """Add the ``info`` verb."""
    info = subparsers.add_parser("info", help="print what is known about a slide")
    info.add_argument("slide", help="slide or image file")
    add_json_option(info, "the slide's info")
    info.add_argument("--properties", action="store_true", help="include raw vendor properties")
    info.set_defaults(func=run_info)


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
