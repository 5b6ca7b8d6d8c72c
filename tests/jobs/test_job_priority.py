"""Tile work goes before analysis work: thread priority, torch threads, slots, pauses."""

from __future__ import annotations

import os
import sys
import threading

import pytest
import torch

from her2viewer.gui.tiles import TileCache, TileKey, TileLoader, layer_tile
from her2viewer.jobs import Job, core

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice")


def own_nice() -> int:
    """Nice value of the calling thread."""
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


@linux_only
def test_analysis_threads_are_nicer_than_tile_workers(qapp):
    loader = TileLoader(TileCache(8), workers=1)
    seen = {}

    def produce():
        seen["tile"] = own_nice()
        return layer_tile(None)

    def analysis(context):
        seen["job"] = own_nice()
        reader = threading.Thread(target=lambda: seen.setdefault("reader", own_nice()))
        reader.start()
        reader.join()

    try:
        loader.submit(1, [((0,), TileKey("layer", 1, 0, 0, 0, 0), produce)])
        assert loader.wait_idle(10)
        Job(analysis, "analysis", background=True).start().wait(10)
    finally:
        loader.shutdown()
    assert seen["job"] > seen["tile"] > own_nice()
    assert seen["reader"] == seen["job"]  # threads a job starts inherit its priority


def test_torch_threads_limited_while_a_job_runs_and_restored(monkeypatch):
    previous = torch.get_num_threads()
    monkeypatch.setattr(core, "background_torch_threads", lambda: 1)
    torch.set_num_threads(2)
    try:
        inside = Job(lambda context: torch.get_num_threads(), background=True).start().wait(10)
        after = Job(lambda context: torch.get_num_threads()).start().wait(10)
        assert (inside, after, torch.get_num_threads()) == (1, 2, 2)
    finally:
        torch.set_num_threads(previous)


def test_background_jobs_wait_for_a_free_slot():
    release, second_ran = threading.Event(), threading.Event()
    first = Job(lambda context: release.wait(10), background=True).start()
    second = Job(lambda context: second_ran.set(), background=True).start()
    try:
        assert not second_ran.wait(0.3) and second.state == "pending"
    finally:
        release.set()
    first.wait(10)
    second.wait(10)
    assert second_ran.is_set() and second.state == "done"


def test_queued_tiles_are_served_before_analysis_chunks(qapp, monkeypatch):
    monkeypatch.setattr(core, "MAX_PAUSE_S", 60.0)
    loader = TileLoader(TileCache(8), workers=1)
    reading, release, order = threading.Event(), threading.Event(), []

    def produce():
        reading.set()
        release.wait(10)
        order.append("tile")
        return layer_tile(None)

    def analysis(context):
        for chunk in range(2):
            context.report(chunk, 2)
            order.append(f"chunk {chunk}")

    try:
        loader.submit(1, [((0,), TileKey("layer", 1, 0, 0, 0, 0), produce)])
        assert reading.wait(10)
        job = Job(analysis, "analysis", background=True).start()
        with pytest.raises(TimeoutError):
            job.wait(0.3)  # paused at its first report while the tile is read
        release.set()
        job.wait(10)
    finally:
        release.set()
        loader.shutdown()
    assert order == ["tile", "chunk 0", "chunk 1"]
    assert not core.FOREGROUND.busy


def where_and_how_nice(context):
    """A process job: report twice, say which process ran it and at what nice value."""
    for step in (1, 2):
        context.report(step, 2)
    return os.getpid(), os.getpriority(os.PRIO_PROCESS, 0)


def until_cancelled(context):
    """A process job that reports once, then runs until it is cancelled."""
    context.report(1, 0)
    while True:
        context.check()


@linux_only
def test_process_jobs_run_nicer_in_another_process_and_cancel():
    seen = []
    job = Job(where_and_how_nice, "process", process=True)
    job.on_progress(lambda progress: seen.append(progress.done))
    pid, nice = job.start().wait(120)
    assert pid != os.getpid() and nice > own_nice()
    assert seen == [1, 2] and job.state == "done"
    endless = Job(until_cancelled, "endless", process=True)
    endless.on_progress(lambda progress: endless.cancel())
    endless.start()
    with pytest.raises(core.Cancelled):
        endless.wait(60)
    assert Job(where_and_how_nice, process=True).start().wait(60)[0] == pid  # process reused


def test_a_shut_down_loader_never_holds_background_jobs(qapp):
    """A view repainting after its loader stopped queued tiles nobody would read, and every
    background job then paused at each report as if tiles were pending."""
    loader = TileLoader(TileCache(8), workers=1)
    loader.shutdown()
    queued = loader.submit(1, [((0,), TileKey("layer", 1, 0, 0, 0, 0), lambda: layer_tile(None))])
    assert queued == 0
    assert not core.FOREGROUND.busy
