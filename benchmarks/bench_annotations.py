"""Annotation rendering benchmark: frame times while panning with 10,000 polygons and
100,000 points, and the time of a click's hit-test. Prints JSON.

The 100000 x 80000 Aperio SVS of ``bench_viewer.py`` (written once into the temp folder
by ``large_slide.write_large_slide``) in a real 1600 x 1000 SlideView, offscreen, with an
:class:`~her2viewer.gui.annotations.layer.AnnotationPainter` over a document of random
polygons (12 to 48 vertices, 60 to 1500 px across, QuPath's classes) and a point set
for each of four classes. At each zoom (overview, 2.5x, 10x, 40x) the painter first fills the view's
annotation tiles (a few per frame, as after a zoom: ``fill_*``), then the view pans for
``--frames`` frames, each painted synchronously; the figures are the whole frame (slide
tiles and annotations, as the view measures it), the annotation painter's share and
the GUI thread's whole time per frame (``gui_busy``: paint and events, the annotation
tiles prefetched between frames included), with the same pan without annotations as
the baseline. Targets: frame p95 < 16.7 ms, click < 1 ms.

    QT_QPA_PLATFORM=offscreen .venv/bin/python benchmarks/bench_annotations.py
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import shapely

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from large_slide import write_large_slide  # noqa: E402

from her2viewer.annotations.model import (  # noqa: E402
    DEFAULT_CLASSES,
    Annotation,
    AnnotationDocument,
)
from her2viewer.gui.annotations.layer import AnnotationPainter  # noqa: E402
from her2viewer.gui.app import make_app  # noqa: E402
from her2viewer.gui.slideview import SlideView, ViewState  # noqa: E402
from her2viewer.gui.tiles import TileCache, TileLoader  # noqa: E402
from her2viewer.slide import open_slide  # noqa: E402

SIZE = (100_000, 80_000)
VIEWPORT = (1600, 1000)
#: Zooms panned: name -> magnification of the 40x slide (None: the fitted overview).
ZOOMS = {"overview": None, "2.5x": 2.5, "10x": 10.0, "40x": 40.0}


def random_document(polygons: int, points: int, seed: int = 0) -> AnnotationDocument:
    """Random star-shaped polygons over the slide and one point set per class."""
    rng = np.random.default_rng(seed)
    classes = [c.name for c in DEFAULT_CLASSES]
    anns = []
    for i in range(polygons):
        n = int(rng.integers(12, 49))
        angles = np.sort(rng.uniform(0, 2 * np.pi, n))
        radius = rng.uniform(30, 750) * rng.uniform(0.6, 1.0, n)
        cx, cy = rng.uniform(0, SIZE[0]), rng.uniform(0, SIZE[1])
        ring = np.c_[cx + radius * np.cos(angles), cy + radius * np.sin(angles)]
        anns.append(
            Annotation(
                shapely.Polygon(ring),
                class_name=classes[i % len(classes)],
                name=f"region {i}" if i % 10 == 0 else "",
            )
        )
    per_class = np.array_split(rng.uniform(0, 1, (points, 2)) * SIZE, 4)
    names = ("Positive", "Negative", "Tumor", "Immune cells")
    for name, coords in zip(names, per_class, strict=True):
        anns.append(Annotation(shapely.MultiPoint(coords), kind="points", class_name=name))
    return AnnotationDocument(anns)


def summary(values, prefix: str) -> dict:
    """p50, p95 and max of ``values`` (ms) under keys starting with ``prefix``."""
    values = np.asarray(values)
    return {
        f"{prefix}_p50": round(float(np.percentile(values, 50)), 2),
        f"{prefix}_p95": round(float(np.percentile(values, 95)), 2),
        f"{prefix}_max": round(float(values.max()), 2),
    }


class TimedPainter:
    """Wraps a vector painter and records the milliseconds of each of its paints."""

    def __init__(self, painter):
        self.painter = painter
        self.ms: list[float] = []

    def paint(self, qpainter, view) -> None:
        start = time.perf_counter()
        self.painter.paint(qpainter, view)
        self.ms.append((time.perf_counter() - start) * 1000)


def settle(app, view, seconds: float = 5.0) -> None:
    """Let the slide tiles of the current view load (at most ``seconds``)."""
    end = time.perf_counter() + seconds
    while not view.fully_loaded() and time.perf_counter() < end:
        app.processEvents()
        time.sleep(0.005)
    view.repaint()


def go_to(app, view, magnification: float | None) -> None:
    """Show the slide's centre at ``magnification`` (None: fitted) with its tiles loaded."""
    if magnification is None:
        view.fit()
    else:
        view.set_state(ViewState(SIZE[0] / 2, SIZE[1] / 2, 40.0 / magnification))
    end = time.perf_counter() + 5.0
    while not view.fully_loaded() and time.perf_counter() < end:
        app.processEvents()
        time.sleep(0.005)
    view.repaint()


def fill(app, view, painter: AnnotationPainter) -> dict:
    """Repaint until the painter has every annotation tile of the view (as the view does
    after a zoom): how long it took, in how many frames, and the longest frame."""
    view.frame_ms.clear()
    start = time.perf_counter()
    view.repaint()
    while painter.stats.pending:
        app.processEvents()
        view.repaint()
    return {
        "fill_ms": round((time.perf_counter() - start) * 1000, 1),
        "fill_frames": len(view.frame_ms),
        "fill_frame_ms_max": round(max(view.frame_ms), 2),
    }


def pan(app, view, frames: int) -> tuple[list[float], list[float]]:
    """Pan ``frames`` frames (a slow circle); each frame's paint time and the time the GUI
    thread was busy for it (paint and events: arriving slide tiles, prefetched annotation
    tiles), in ms."""
    view.frame_ms.clear()
    busy = []
    for i in range(frames):
        angle = 2 * np.pi * i / frames
        start = time.perf_counter()
        view.pan_by(12 * np.cos(angle), 12 * np.sin(angle))
        view.repaint()
        app.processEvents()
        busy.append((time.perf_counter() - start) * 1000)
    return list(view.frame_ms), busy


def hit_tests(painter: AnnotationPainter, clicks: int, tolerance: float) -> dict:
    """Time ``clicks`` random clicks through the painter's index (ms per click)."""
    rng = np.random.default_rng(5)
    painter.ids_at(1.0, 1.0)  # build the index first
    times = []
    for x, y in rng.uniform(0, 1, (clicks, 2)) * SIZE:
        start = time.perf_counter()
        painter.ids_at(x, y, tolerance)
        times.append((time.perf_counter() - start) * 1000)
    return summary(times, "click_ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=240, help="frames panned per zoom")
    parser.add_argument("--polygons", type=int, default=10_000)
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--clicks", type=int, default=1000)
    parser.add_argument("--slide", type=Path, help="a large slide instead of the written one")
    args = parser.parse_args()
    app = make_app(offscreen=True)
    path = args.slide or Path(tempfile.gettempdir()) / "her2viewer_bench_100000x80000_40x.svs"
    if not path.exists():
        write_large_slide(path, *SIZE, magnification=40)
    document = random_document(args.polygons, args.points)
    loader = TileLoader(TileCache(512))
    view = SlideView(loader)
    view.resize(*VIEWPORT)
    view.show()
    view.set_slide(open_slide(path))
    while view.overview is None:
        app.processEvents()
        time.sleep(0.001)
    painter = AnnotationPainter(document)
    timed = TimedPainter(painter)
    result = {
        "slide": f"{SIZE[0]}x{SIZE[1]} Aperio SVS, 40x",
        "viewport": VIEWPORT,
        "polygons": args.polygons,
        "points": args.points,
        "frames_per_zoom": args.frames,
        "cpus": os.cpu_count(),
        "load_average_start": os.getloadavg()[0],
        "zooms": {},
    }
    for name, magnification in ZOOMS.items():
        view.vector_painters = []
        go_to(app, view, magnification)
        baseline, baseline_busy = pan(app, view, args.frames)
        go_to(app, view, magnification)
        view.vector_painters = [timed]
        filled = fill(app, view, painter)
        timed.ms.clear()
        frames, busy = pan(app, view, args.frames)
        result["zooms"][name] = {
            **summary(frames, "frame_ms"),
            **summary(timed.ms, "annotations_ms"),
            **summary(busy, "gui_busy_ms"),
            **summary(baseline, "baseline_frame_ms"),
            **summary(baseline_busy, "baseline_gui_busy_ms"),
            **filled,
        }
    # 3 screen pixels at 10x, as a click selects
    result["hit_test"] = hit_tests(painter, args.clicks, tolerance=3 * 4.0)
    result["hit_test"]["objects"] = len(document)
    result["targets_met"] = bool(
        all(z["frame_ms_p95"] < 16.7 for z in result["zooms"].values())
        and result["hit_test"]["click_ms_p50"] < 1.0
    )
    result["load_average_end"] = os.getloadavg()[0]
    loader.shutdown()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
