"""Qt-free background jobs: progress, cancellation, failures; extraction as a job."""

from __future__ import annotations

import threading

import pytest
import torch
from torch import nn

from her2viewer.features.encoders import torchscript_encoder
from her2viewer.features.engine import extract_features
from her2viewer.jobs import Cancelled, Job, run_inline
from her2viewer.slide import open_slide
from her2viewer.tissue import make_patch_grid, segment_tissue


def test_job_reports_progress_and_returns():
    seen = []

    def work(ctx):
        for i in range(1, 4):
            ctx.report(i, 3, f"step {i}")
        return "ok"

    job = Job(work, "count")
    job.on_progress(lambda p: seen.append((p.done, p.total, p.message)))
    assert job.start().wait(10) == "ok"
    assert job.state == "done" and seen[-1] == (3, 3, "step 3")
    assert job.progress.fraction == 1.0


def test_job_cancel_and_failure():
    started, release = threading.Event(), threading.Event()

    def slow(ctx):
        started.set()
        release.wait(10)
        ctx.check()
        return "never"

    job = Job(slow).start()
    started.wait(10)
    job.cancel()
    release.set()
    with pytest.raises(Cancelled):
        job.wait(10)
    assert job.state == "cancelled"

    def broken(ctx):
        raise ValueError("bad input")

    failed = Job(broken).start()
    with pytest.raises(ValueError, match="bad input"):
        failed.wait(10)
    assert failed.state == "failed"


def test_wait_timeout_and_inline():
    gate = threading.Event()
    job = Job(lambda ctx: gate.wait(10)).start()
    with pytest.raises(TimeoutError):
        job.wait(0.01)
    gate.set()
    assert job.wait(10) is True
    seen = []
    assert run_inline(lambda ctx: ctx.report(1, 2) or 5, seen.append) == 5
    assert seen[0].fraction == 0.5


def test_extraction_job_cancelled_leaves_nothing(synthetic_case, tmp_path):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    torch.jit.script(net.eval()).save(str(tmp_path / "enc.pt"))
    encoder = torchscript_encoder(tmp_path / "enc.pt", input_size=16)
    out = tmp_path / "out"
    with open_slide(synthetic_case / "he.svs") as slide:
        grid = make_patch_grid(slide, segment_tissue(slide), magnification=5.0, patch_size=32)

        def work(ctx):
            return extract_features(
                slide,
                grid,
                encoder,
                out / "f.h5",
                device="cpu",
                batch_size=8,
                progress=ctx.report,
                cancel=ctx.token,
            )

        job = Job(work, "extract")
        job.on_progress(lambda p: job.cancel() if p.done >= 16 else None)
        with pytest.raises(Cancelled):
            job.start().wait(120)
        assert job.state == "cancelled" and job.progress.done == 16
        assert not out.exists() or not any(out.iterdir())
        done = Job(work, "extract").start().wait(120)
    assert done.n_patches == len(grid) and done.resumed_from == 0
