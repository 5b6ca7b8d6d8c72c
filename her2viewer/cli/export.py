"""Verb ``export-region``: a region of a slide as PNG or TIFF (TIFF written in tiles)."""

from __future__ import annotations

import argparse
import json

from her2viewer.argtypes import bounded
from her2viewer.cli.options import add_json_option, add_output_option
from her2viewer.outputs import check_output_file
from her2viewer.overlay.region import export_region, output_size
from her2viewer.slide import open_slide


def rect_type(text: str) -> tuple[int, int, int, int]:
    """Parse ``x,y,w,h`` (level-0 px, whole numbers) for ``--rect``."""
    try:
        x, y, w, h = (int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"give x,y,w,h in level-0 px such as 1000,2000,4096,4096, got {text!r}"
        ) from None
    return x, y, w, h


rect_type.__name__ = "rect"  # argparse names the type in its messages


def register(subparsers) -> None:
    """Add the ``export-region`` verb."""
    export = subparsers.add_parser(
        "export-region", help="write a region of a slide as PNG or TIFF (tiled, any size)"
    )
    export.add_argument("slide", help="slide or image file")
    export.add_argument(
        "--rect", type=rect_type, required=True, metavar="X,Y,W,H", help="level-0 px region"
    )
    export.add_argument(
        "--downsample",
        type=bounded(float, 1.0),
        default=1.0,
        help="level-0 px per output px (default 1: full resolution)",
    )
    add_output_option(export, ".png, .tif or .tiff file (a large region: .tif)", required=True)
    add_json_option(export, "what was written")
    export.set_defaults(func=run_export_region)


def run_export_region(args) -> int:
    """Export the region and say what was written."""
    out = check_output_file(args.out)
    with open_slide(args.slide) as slide:
        path = export_region(slide, args.rect, args.downsample, out)
    width, height = output_size(args.rect, args.downsample)
    if args.json:
        print(json.dumps({"out": str(path), "width": width, "height": height}))
    else:
        print(f"wrote {path} ({width} x {height} px)")
    return 0
