"""Viewer benchmark: first paint, frame times while panning/zooming, cache, memory. Prints JSON.

A 100000 x 80000 Aperio SVS file (40x, 0.25 um/px, 256 px JPEG tiles, written once
by ``large_slide.write_large_slide`` into the temp folder) opened through
``open_slide``; 1600 x 1000 offscreen viewport; two overlay layers on; cold cache.
The same scripted path is replayed with a naive baseline view that reads missing
tiles synchronously on the GUI thread.

    QT_QPA_PLATFORM=offscreen .venv/bin/python benchmarks/bench_viewer.py [--soak-seconds 120]

``--background-analysis [process|thread|plain]`` runs HER2Net on the demo slide, one job
after another through ``her2viewer.jobs.Job`` as the app's panels do, from before the slide
opens until the soak ends, and adds its progress rate: background jobs in the worker
process (default), background jobs on a thread, or plain jobs (normal priority, all torch
threads, no pause for tiles: how analyses ran before).

``--display`` draws both views with brightness, contrast and gamma changed and the DAB
stain view on (issue 19: applied on the tile workers, so frames cost what they did).
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from large_slide import write_large_slide  # noqa: E402

from her2viewer.gui.app import make_app  # noqa: E402
from her2viewer.gui.slideview import (  # noqa: E402
    OVERVIEW_LEVEL,
    OVERVIEW_SIZE,
    SlideView,
    ViewState,
)
from her2viewer.gui.tiles import TileCache, TileKey, TileLoader, rgb_to_image  # noqa: E402
from her2viewer.jobs import Job  # noqa: E402
from her2viewer.overlay import HeatmapLayer, MaskLayer  # noqa: E402
from her2viewer.overlay.display import DisplaySettings, Levels  # noqa: E402
from her2viewer.slide import open_slide  # noqa: E402
from her2viewer.stain import HDAB  # noqa: E402

SIZE = (100_000, 80_000)
VIEWPORT = (1600, 1000)
#: ``--display``: levels on every channel and the DAB channel alone (reference vectors).
DISPLAY = (
    DisplaySettings()
    .with_levels(Levels.from_brightness_contrast(0.1, 1.4, 1.2))
    .with_stain("dab", HDAB)
)


class NaiveView(SlideView):
    """Baseline: missing tiles are read synchronously inside paintEvent (GUI thread)."""

    def _submit_requests(self) -> None:
        self._schedule_pending = False

    def _paint_slide(self, painter) -> None:
        level = self.target_level()
        signature = self.overlay_signature()
        for col, row in self.viewport.tiles_in(level, self.visible_bounds()):
            key = self._tile_key(signature, level, col, row)
            if self.cache.peek(key) is None:
                self.cache.put(key, self._tile_producer(signature, level, col, row)())
        super()._paint_slide(painter)


def layers():
    rng = np.random.default_rng(1)
    scores = rng.random((SIZE[1] // 512, SIZE[0] // 512)).astype(np.float32)
    heat = HeatmapLayer("scores", values=scores, downsample=512, threshold=0.3, opacity=0.4)
    yy, xx = np.mgrid[0 : SIZE[1] // 64, 0 : SIZE[0] // 64]
    mask = ((xx - 700) ** 2 + (yy - 600) ** 2 < 300**2).astype(np.uint8)
    return [heat, MaskLayer("region", labels=mask, downsample=64, mode="both", opacity=0.6)]


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        line = next(x for x in f if x.startswith("VmRSS"))
    return int(line.split()[1]) / 1024


def path_states(view, seconds: float, fps: float = 60.0):
    """The scripted path: 1.25x -> 40x -> 1.25x with pans, as one state per frame."""
    ds_for = lambda mag: 40.0 / mag  # noqa: E731
    keys = [  # (time fraction, magnification, cx, cy)
        (0.0, 1.25, 50000, 40000),
        (0.2, 5, 42000, 36000),
        (0.45, 40, 40000, 35000),
        (0.55, 40, 41500, 35600),
        (0.75, 10, 56000, 44000),
        (1.0, 1.25, 50000, 40000),
    ]
    frames = int(seconds * fps)
    for i in range(frames):
        t = i / max(frames - 1, 1)
        j = max(k for k in range(len(keys) - 1) if keys[k][0] <= t) if t < 1 else len(keys) - 2
        (t0, m0, x0, y0), (t1, m1, x1, y1) = keys[j], keys[j + 1]
        a = (t - t0) / (t1 - t0)
        mag = math.exp(math.log(m0) + a * (math.log(m1) - math.log(m0)))
        yield ViewState(x0 + a * (x1 - x0), y0 + a * (y1 - y0), ds_for(mag))


def drive(app, view, seconds: float, fps: float = 60.0) -> dict:
    """Replay the path in real time; measure paint time and the longest GUI-thread block."""
    view.frame_ms.clear()
    blocks = []
    period = 1.0 / fps
    start = time.perf_counter()
    for i, state in enumerate(path_states(view, seconds, fps)):
        t0 = time.perf_counter()
        view.set_state(state)  # schedules one repaint, done by the event loop
        app.processEvents()
        blocks.append((time.perf_counter() - t0) * 1000)
        delay = start + (i + 1) * period - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
    frames = np.array(view.frame_ms)
    return {
        "frame_ms_p50": round(float(np.percentile(frames, 50)), 2),
        "frame_ms_p95": round(float(np.percentile(frames, 95)), 2),
        "gui_block_ms_max": round(max(blocks), 1),
        "frames": len(frames),
    }


def wait_ms(app, ms: float) -> None:
    end = time.perf_counter() + ms / 1000
    while time.perf_counter() < end:
        app.processEvents()
        time.sleep(0.002)


def right_level(app, view) -> float:
    """Mean fraction of the viewport drawn at the right level 500 ms after each stop."""
    fractions = []
    for mag, cx, cy in (
        (1.25, 50000, 40000),
        (5, 30000, 30000),
        (20, 60000, 45000),
        (40, 47000, 38000),
        (10, 52000, 42000),
        (2.5, 45000, 41000),
    ):
        view.set_state(ViewState(cx, cy, 40.0 / mag))
        wait_ms(app, 500)
        view.repaint()
        fractions.append(view.stats.right_level_fraction)
    return round(float(np.mean(fractions)), 4)


def soak(app, view, seconds: float, cache: TileCache) -> dict:
    rng = np.random.default_rng(2)
    start_rss = rss_mb()
    peak = start_rss
    max_cache = 0
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        mag = 40.0 / 2 ** rng.uniform(0, 5)
        view.set_state(ViewState(rng.uniform(10000, 90000), rng.uniform(8000, 72000), 40.0 / mag))
        for _ in range(8):
            view.repaint()
            app.processEvents()
            time.sleep(0.016)
        peak = max(peak, rss_mb())
        max_cache = max(max_cache, cache.nbytes)
    return {
        "soak_rss_growth_mb": round(peak - start_rss, 1),
        "soak_cache_max_mb": round(max_cache / 2**20, 1),
    }


def her2net_demo(slide_path: Path, context) -> None:
    """One HER2Net analysis of the demo slide as the app's panel runs it (never cached)."""
    from her2viewer.analysis.her2net import analyse_her2net
    from her2viewer.models.her2net.model import demo_bundle_path
    from her2viewer.slide import open_slide as open_he

    with open_he(slide_path) as slide, tempfile.TemporaryDirectory() as out:
        analyse_her2net(slide, demo_bundle_path(), None, context, out_dir=out)


class BackgroundAnalysis:
    """HER2Net on the demo slide, one job after another until :meth:`stop`.

    Parameters
    ----------
    mode : str
        ``"process"``: background jobs in the worker process; ``"thread"``: background
        jobs on a thread; ``"plain"``: plain jobs (normal priority, as before).
    """

    def __init__(self, mode: str):
        from her2viewer.demo import ensure_demo_case

        self.mode = mode
        self.work = functools.partial(her2net_demo, ensure_demo_case() / "he.svs")
        self.tiles = 0
        self.runs = 0
        self._stop = threading.Event()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            last = [0]
            job = Job(
                self.work,
                "her2net",
                background=self.mode != "plain",
                process=self.mode == "process",
            )
            job.on_progress(lambda p, last=last: self._count(p.done, last))
            job.start().wait()
            self.runs += 1

    def _count(self, done: int, last: list[int]) -> None:
        self.tiles += done - last[0]
        last[0] = done
        self._started.set()

    def start(self) -> BackgroundAnalysis:
        """Start the jobs and return once the first tiles are done (the model is loaded)."""
        self._thread.start()
        self._started.wait(120)
        self._start = time.perf_counter()
        self._tiles0 = self.tiles
        return self

    def stop(self) -> dict:
        """Stop after the current job; the tiles per second since :meth:`start`."""
        seconds = time.perf_counter() - self._start
        tiles = self.tiles - self._tiles0
        self._stop.set()
        self._thread.join()
        return {
            "analysis": "HER2Net on the demo slide, 12000x9000 at 20x, not cached",
            "analysis_job": self.mode,
            "analysis_tiles_per_s": round(tiles / seconds, 2),
            "analysis_runs_finished": self.runs,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="scripted path length")
    parser.add_argument("--soak-seconds", type=float, default=120.0)
    parser.add_argument("--cache-mb", type=float, default=512.0)
    parser.add_argument(
        "--slide", type=Path, help="a large slide to use instead of the written one"
    )
    parser.add_argument(
        "--background-analysis",
        nargs="?",
        const="process",
        choices=["process", "thread", "plain"],
        help="run HER2Net in background jobs meanwhile: in the worker process (default), "
        "on a thread, or as plain jobs (as before)",
    )
    parser.add_argument(
        "--display", action="store_true", help="brightness/contrast/gamma and a stain view on"
    )
    args = parser.parse_args()
    app = make_app(offscreen=True)
    result = {
        "slide": f"{SIZE[0]}x{SIZE[1]} Aperio SVS, 40x, 256 px JPEG tiles",
        "viewport": VIEWPORT,
        "cache_mb": args.cache_mb,
        "cpus": os.cpu_count(),
        "soak_seconds": args.soak_seconds,
        "load_average_start": os.getloadavg()[0],
    }

    path = args.slide or Path(tempfile.gettempdir()) / "her2viewer_bench_100000x80000_40x.svs"
    if not Path(path).exists():
        write_large_slide(Path(path), *SIZE, magnification=40)
    cache = TileCache(args.cache_mb)
    loader = TileLoader(cache)
    view = SlideView(loader)
    view.resize(*VIEWPORT)
    view.show()
    app.processEvents()
    analysis = args.background_analysis and BackgroundAnalysis(args.background_analysis)
    if analysis:
        analysis.start()
    rss0 = rss_mb()
    t0 = time.perf_counter()
    view.set_slide(open_slide(path))
    while view.overview is None:
        app.processEvents()
        time.sleep(0.001)
    view.repaint()
    result["first_paint_ms"] = round((time.perf_counter() - t0) * 1000, 1)
    for layer in layers():
        view.add_layer(layer)
    if args.display:
        view.set_display(DISPLAY)
        result["display"] = "brightness 0.1, contrast 1.4, gamma 1.2, DAB stain view"
    cache.reset_stats()
    result.update(drive(app, view, args.seconds))
    result["tile_cache_hit_rate"] = round(cache.hit_rate(), 3)
    result["right_level_fraction"] = right_level(app, view)
    result.update(soak(app, view, args.soak_seconds, cache))
    result["rss_over_start_mb"] = round(rss_mb() - rss0, 1)
    result["memory_bound_ok"] = bool(result["soak_rss_growth_mb"] < args.cache_mb + 300)
    if analysis:
        result.update(analysis.stop())
    loader.shutdown()

    base_cache = TileCache(args.cache_mb)
    base_loader = TileLoader(base_cache, workers=1)
    naive = NaiveView(base_loader)
    naive.resize(*VIEWPORT)
    naive.show()
    slide = open_slide(path)
    naive.set_slide(slide)
    overview = TileKey("slide", naive._source, 0, OVERVIEW_LEVEL, 0, 0)
    base_cache.put(overview, rgb_to_image(slide.thumbnail(OVERVIEW_SIZE)))
    for layer in layers():
        naive.add_layer(layer)
    if args.display:
        naive.set_display(DISPLAY)
    base = drive(app, naive, args.seconds)
    result["baseline_frame_ms_p50"] = base["frame_ms_p50"]
    result["baseline_frame_ms_p95"] = base["frame_ms_p95"]
    result["baseline_gui_block_ms_max"] = base["gui_block_ms_max"]
    base_loader.shutdown()
    result["load_average_end"] = os.getloadavg()[0]
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
