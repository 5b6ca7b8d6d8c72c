"""Time the Cells dock's live preview on a 1600 x 1000 view at 20x (0.5 um/px); prints JSON.

The preview runs the cell engine on the visible region whenever a slider that needs a new
measurement moves (issue 18: under 300 ms). The field is drawn cell by cell
(slide/cell_field.py) and opened as a slide like any image; the preview is timed as the
dock runs it (run_preview with the dock's tile size), seven times, and the median reported
with the machine's load average beside it.

Usage: python benchmarks/bench_cells_preview.py [--marker her2|ki67|er|pr] [--repeats N]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from her2viewer.analysis.cells import CellsOptions
from her2viewer.analysis.ihc import slide_stain_matrix
from her2viewer.cells.profiles import load_profile
from her2viewer.gui.cells_panel import PREVIEW_TILE, run_preview
from her2viewer.slide import open_slide
from her2viewer.slide.cell_field import draw_cell_field

#: The view: 1600 x 1000 analysis pixels inside a larger field.
VIEW = (400, 300, 2000, 1300)
#: 0.5 um/px written as the PNG's resolution (pixels per metre).
DPI_AT_HALF_MICRON = 50800


def time_preview(marker: str, repeats: int) -> dict:
    """Median and each time of the preview of :data:`VIEW`."""
    field = draw_cell_field(2400, 1600, (0.4, 0.3, 0.2, 0.1), marker=marker, seed=1)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "view.png"
        Image.fromarray(field.rgb).save(path, dpi=(DPI_AT_HALF_MICRON, DPI_AT_HALF_MICRON))
        with open_slide(path) as slide:
            options = CellsOptions(
                marker=marker,
                profile=load_profile(None, marker),
                outlines=False,
                tile=PREVIEW_TILE,
                stain_matrix=slide_stain_matrix(slide),
                score=True,
            )
            runs = [run_preview(slide, VIEW, options, None) for _ in range(repeats)]
    seconds = [s for _, s in runs]
    return {
        "marker": marker,
        "view_px": [VIEW[2] - VIEW[0], VIEW[3] - VIEW[1]],
        "mpp": field.mpp,
        "cells": len(runs[-1][0].cells),
        "tile": PREVIEW_TILE,
        "ms_each": [round(1000 * s) for s in seconds],
        "median_ms": round(1000 * float(np.median(seconds))),
        "load_average": os.getloadavg()[0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--marker", default="her2", choices=("her2", "ki67", "er", "pr"))
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    print(json.dumps(time_preview(args.marker, args.repeats)))


if __name__ == "__main__":
    main()
