"""The extraction engine: patches of a slide -> encoder features in a CLAM-compatible h5.

Tiles are decoded by a thread pool, a few patches per job, into a ring of (pinned)
uint8 batch buffers, several batches ahead; one device worker (the calling thread)
copies each batch non-blocking to the device, normalises it there and runs the
encoder (channels-last + autocast on CUDA). On the CPU the decoding threads also
resize tiles to the encoder's input (PIL bilinear, as CLAM); on CUDA the GPU does it
(antialiased bilinear on the whole batch), because PIL's conversions hold Python's
GIL and capped 16 decoding threads at ~1500 tiles/s against the H100's ~10000
patches/s. Results go batch by batch into
``<out>.partial`` with a ``n_done`` counter, so a killed run resumes where it
stopped; the finished file is renamed into place. Cancelling removes the partial.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import torch

from her2viewer.devices import choose_device
from her2viewer.errors import ModelError
from her2viewer.features.encoders import Encoder
from her2viewer.features.store import save_pt_atomic
from her2viewer.jobs import Cancelled, CancelToken
from her2viewer.slide import Slide
from her2viewer.tissue import PatchGrid, write_coords_h5

ProgressFn = Callable[[int, int], None]
BatchFn = Callable[[int, np.ndarray], None]


@dataclass
class ExtractionResult:
    """Summary of one slide's extraction."""

    path: Path
    n_patches: int
    dim: int
    seconds: float
    resumed_from: int
    device: str

    @property
    def patches_per_s(self) -> float:
        """Patches computed in this run per second."""
        done = self.n_patches - self.resumed_from
        return done / self.seconds if self.seconds > 0 else 0.0


@dataclass
class DeviceRunner:
    """An encoder placed on a device with its mixed-precision settings."""

    encoder: Encoder
    device: torch.device

    def __post_init__(self) -> None:
        self.cuda = self.device.type == "cuda"
        module = self.encoder.module.to(self.device).eval()
        if self.cuda:
            module = module.to(memory_format=torch.channels_last)
            bf16 = torch.cuda.is_bf16_supported()
            self.dtype = torch.bfloat16 if bf16 else torch.float16
        self.module = module

    @property
    def resizes_on_device(self) -> bool:
        """True when tiles reach :meth:`__call__` at their read size (CUDA)."""
        return self.cuda and self.encoder.input_size is not None

    @torch.inference_mode()
    def __call__(self, batch: torch.Tensor) -> np.ndarray:
        """Encode a uint8 (B, S, S, 3) batch; returns float32 (B, D) on the CPU.

        ``S`` is the encoder's input size, or any tile size when
        :attr:`resizes_on_device`.
        """
        x = self.encoder.normalise(batch.to(self.device, non_blocking=True))
        if not self.cuda:
            return self.module(x.contiguous()).float().cpu().numpy()
        x = x.contiguous(memory_format=torch.channels_last)
        size = self.encoder.input_size
        if self.resizes_on_device and x.shape[-1] != size:
            x = torch.nn.functional.interpolate(
                x, size=(size, size), mode="bilinear", antialias=True, align_corners=False
            )
        with torch.autocast("cuda", dtype=self.dtype):
            return self.module(x).float().cpu().numpy()


def extract_features(
    slide: Slide,
    grid: PatchGrid,
    encoder: Encoder,
    out_path: str | Path,
    *,
    device: str | torch.device = "auto",
    batch_size: int | None = None,
    workers: int | None = None,
    prefetch: int = 3,
    progress: ProgressFn | None = None,
    on_batch: BatchFn | None = None,
    cancel: CancelToken | None = None,
    pt_path: str | Path | None = None,
) -> ExtractionResult:
    """Encode every patch of ``grid`` and write a CLAM-compatible features h5.

    Parameters
    ----------
    slide : Slide
    grid : PatchGrid
        Patches to encode; their order is the order of the output rows.
    encoder : Encoder
    out_path : path
        The ``.h5`` to write (``features`` N x D float32, ``coords`` N x 2 with
        CLAM's attributes). A ``<out_path>.partial`` from a killed run is resumed.
    device : str or torch.device
        ``"auto"`` (CUDA, MPS, CPU), or a named device.
    batch_size, workers : int, optional
        Batch size and tile-decoding threads; by default :func:`default_batching`'s.
    prefetch : int
        Batches decoded ahead.
    progress : callable, optional
        ``progress(done, total)`` after each batch (may raise :class:`Cancelled`).
    on_batch : callable, optional
        ``on_batch(start, features)`` with each batch's rows, for progressive display.
    cancel : CancelToken, optional
        Checked between batches; cancelling removes the partial file.
    pt_path : path, optional
        Also write CLAM's ``.pt`` features tensor there.

    Raises
    ------
    Cancelled
        When cancelled; nothing is left behind.
    ModelError
        Bad arguments or an empty grid.
    """
    runner = DeviceRunner(encoder, choose_device(device))
    default_batch, default_workers = default_batching(runner.device)
    batch_size = default_batch if batch_size is None else batch_size
    workers = default_workers if workers is None else workers
    if batch_size < 1 or workers < 1:
        raise ModelError("Batch size and worker count must be at least 1.")
    if len(grid) == 0:
        raise ModelError(f"Slide {grid.name} has no patches to encode; check its tissue mask.")
    out_path = Path(out_path)
    partial = out_path.with_name(out_path.name + ".partial")
    start_time = time.perf_counter()
    resumed = _open_partial(partial, grid, encoder, slide)
    try:
        with h5py.File(partial, "a") as h5:
            _run_batches(
                slide,
                grid,
                runner,
                h5,
                resumed,
                batch_size,
                workers,
                prefetch,
                progress,
                on_batch,
                cancel,
            )
            del h5.attrs["n_done"]
        if pt_path is not None:
            with h5py.File(partial, "r") as h5:
                save_pt_atomic(pt_path, h5["features"][:])
        os.replace(partial, out_path)
    except Cancelled:
        partial.unlink(missing_ok=True)
        raise
    return ExtractionResult(
        out_path,
        len(grid),
        encoder.dim,
        time.perf_counter() - start_time,
        resumed,
        str(runner.device),
    )


def default_batching(device: torch.device) -> tuple[int, int]:
    """Batch size and tile-decoding threads for ``device`` when the caller names none.

    On the CPU 32 patches and 4 threads (the encoder needs the cores). On CUDA 128
    patches and up to 12 threads: the fastest of batch 64-256 x 8-16 threads on an
    H100 with 16 cores (``benchmarks/bench_extract.py``).
    """
    if device.type == "cuda":
        return 128, max(2, min(12, os.cpu_count() or 1))
    return 32, 4


def _open_partial(partial: Path, grid: PatchGrid, encoder: Encoder, slide: Slide) -> int:
    """Return rows already done in a matching partial file; start a fresh one otherwise."""
    with contextlib.suppress(OSError, KeyError), h5py.File(partial, "r") as h5:
        same = (
            h5.attrs["encoder_identity"] == encoder.identity
            and np.array_equal(h5["coords"][:], grid.coords)
            and h5["features"].shape == (len(grid), encoder.dim)
        )
        if same:
            return int(h5.attrs["n_done"])
    partial.unlink(missing_ok=True)
    write_coords_h5(partial, grid)
    with h5py.File(partial, "a") as h5:
        h5.create_dataset(
            "features",
            shape=(len(grid), encoder.dim),
            dtype=np.float32,
            chunks=(min(len(grid), 256), encoder.dim),
        )
        h5.attrs.update(
            {
                "encoder": encoder.name,
                "encoder_identity": encoder.identity,
                "encoder_description": json.dumps(encoder.describe(), sort_keys=True),
                "slide_fingerprint": slide.info.fingerprint,
                "n_done": 0,
            }
        )
    return 0


def _run_batches(
    slide, grid, runner, h5, first, batch_size, workers, prefetch, progress, on_batch, cancel
) -> None:
    total = len(grid)
    starts = list(range(first, total, batch_size))
    if not starts:
        return
    resize = not runner.resizes_on_device
    side = runner.encoder.input_size if resize and runner.encoder.input_size else grid.target_size
    per_job = max(1, batch_size // (2 * workers))
    n_buffers = min(prefetch + 1, len(starts))
    pin = runner.device.type == "cuda"
    buffers = [
        torch.empty((batch_size, side, side, 3), dtype=torch.uint8, pin_memory=pin)
        for _ in range(n_buffers)
    ]
    features = h5["features"]
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="decode") as pool:
        pending = deque()

        def submit(b: int) -> None:
            buffer = buffers[b % n_buffers].numpy()
            first, end = starts[b], min(starts[b] + batch_size, total)
            jobs = [
                pool.submit(
                    _decode_into,
                    slide,
                    grid,
                    runner.encoder,
                    resize,
                    range(i, min(i + per_job, end)),
                    buffer[i - first :],
                )
                for i in range(first, end, per_job)
            ]
            pending.append((b, end - first, jobs))

        for b in range(n_buffers):
            submit(b)
        try:
            while pending:
                b, n, jobs = pending.popleft()
                for job in jobs:
                    job.result()
                out = runner(buffers[b % n_buffers][:n])
                start = starts[b]
                features[start : start + n] = out
                h5.attrs["n_done"] = start + n
                h5.flush()
                if b + n_buffers < len(starts):
                    submit(b + n_buffers)
                if on_batch is not None:
                    on_batch(start, out)
                if progress is not None:
                    progress(start + n, total)
                if cancel is not None:
                    cancel.check()
        finally:
            for _, _, jobs in pending:
                for job in jobs:
                    job.cancel()


def _decode_into(slide, grid, encoder, resize: bool, rows: range, out: np.ndarray) -> None:
    """Decode patches ``rows`` into ``out[0], out[1], ...``, resized to the encoder's input
    when ``resize``."""
    for slot, index in enumerate(rows):
        tile = grid.read_patch(slide, index)
        out[slot] = encoder.prepare_tile(tile) if resize else tile
