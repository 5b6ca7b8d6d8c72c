"""Time the Annotations dock's measurement table: one annotation added with N present; JSON.

The table (her2viewer.gui.annotations.panel.MeasurementTable) follows its document's
changes in batches. With N annotations (rectangles on a grid, plus one point set, so the
areas count points inside them) the table is shown and loaded, then one rectangle is added
``repeats`` times: each time is the command, the table's handling of the batch and the
events up to the repaint of the shown table (offscreen). The median is reported with the
first load's time and the machine's load average beside it.

Run it against an older checkout (``PYTHONPATH=that/checkout``) for a before/after figure.

Usage: QT_QPA_PLATFORM=offscreen python benchmarks/bench_annotation_table.py [--n N] [--repeats R]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import shapely
from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QApplication

import her2viewer
from her2viewer.annotations.commands import Add, CommandStack
from her2viewer.annotations.model import Annotation, AnnotationDocument
from her2viewer.gui.annotations.panel import MeasurementTable

#: Spacing of the grid of rectangles (level-0 px) and their side.
STEP, SIDE = 120, 100


class Pane(QObject):
    """The part of an annotation controller the table reads."""

    selection_changed = Signal()

    def __init__(self, document: AnnotationDocument) -> None:
        super().__init__()
        self.document, self.stack, self.selected_ids = document, CommandStack(document), []


def document_of(n: int) -> AnnotationDocument:
    """``n - 1`` rectangles on a square grid and one point set over them (0.25 um/px)."""
    side = int(np.ceil(np.sqrt(n)))
    boxes = [
        Annotation(shapely.box(x, y, x + SIDE, y + SIDE), kind="rectangle", class_name="Tumor")
        for i in range(n - 1)
        for x, y in [((i % side) * STEP, (i // side) * STEP)]
    ]
    rng = np.random.default_rng(0)
    points = shapely.MultiPoint(rng.uniform(0, side * STEP, (500, 2)))
    return AnnotationDocument([*boxes, Annotation(points, kind="points")], mpp=0.25)


def settle(app: QApplication, table: MeasurementTable) -> None:
    """Hand the batch to the table now (not after its timer) and let Qt repaint."""
    table.follower._flush()
    app.processEvents()


def time_table(n: int, repeats: int) -> dict:
    """Load time and the times of adding one rectangle with ``n`` annotations present."""
    app = QApplication.instance() or QApplication([])
    document = document_of(n)
    table = MeasurementTable()
    table.resize(900, 600)
    start = time.perf_counter()
    table.show()
    table.set_controller(pane := Pane(document))
    app.processEvents()
    load = time.perf_counter() - start
    seconds = []
    for i in range(repeats):
        x = -STEP * (i + 2)  # outside the grid: a new row of its own
        start = time.perf_counter()
        pane.stack.push(Add([Annotation(shapely.box(x, 0, x + SIDE, SIDE), kind="rectangle")]))
        settle(app, table)
        seconds.append(time.perf_counter() - start)
    return {
        "annotations": n,
        "load_ms": round(1000 * load),
        "add_one_ms_each": [round(1000 * s, 1) for s in seconds],
        "add_one_median_ms": round(1000 * float(np.median(seconds)), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000, help="annotations present")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    figures = time_table(args.n, args.repeats)
    code = str(Path(her2viewer.__file__).parent)
    print(json.dumps({**figures, "code": code, "loadavg": os.getloadavg()}))


if __name__ == "__main__":
    main()
