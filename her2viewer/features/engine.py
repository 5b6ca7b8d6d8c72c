"""The extraction engine: patches of a slide -> encoder features in a CLAM-compatible h5.

Tiles are decoded by a thread pool, a few patches per job, into a ring of (pinned)
uint8 batch buffers, several batches ahead; one device worker (the calling thread)
copies each batch non-blocking to the device, normalises it there and runs the
encoder (channels-last + autocast on CUDA, in :func:`autocast_dtype`). On the CPU
the decoding threads also resize tiles to the encoder's input (PIL bilinear, as
CLAM); on CUDA the GPU does it (antialiased bilinear on the whole batch), because
PIL's conversions hold Python's GIL and capped 16 decoding threads at ~1500 tiles/s
against the H100's ~10000 patches/s. Results go batch by batch into ``<out>.partial``
with a check per row and a ``n_done`` counter that counts a batch only once it is
flushed to the disk; a killed run (or one that met a full disk) resumes after the rows
that read back intact, and the finished file is renamed into place. Cancelling
removes the partial.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import time
import zlib
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import torch

from her2viewer.devices import choose_device
from her2viewer.errors import ModelError
from her2viewer.features.encoders import Encoder
from her2viewer.features.rawtiles import patch_reader
from her2viewer.features.registry import SPECS
from her2viewer.features.store import save_pt_atomic
from her2viewer.jobs import Cancelled, CancelToken
from her2viewer.outputs import fsync_path, hdf5_output_error, output_error, prepare_output_dir
from her2viewer.slide import Slide
from her2viewer.tissue import PatchGrid, add_coords_dataset

ProgressFn = Callable[[int, int], None]
#: Per-row checks of a partial file, dropped when it is complete.
ROW_CHECK = "row_check"
#: Disk space kept free beyond the features, for HDF5's own bookkeeping (bytes).
HEADROOM = 1 << 16
#: Rows read at a time when verifying a partial file before resuming it.
VERIFY_ROWS = 4096


class NonFiniteFeatures(ModelError):
    """The encoder gave NaN or Inf for a slide; such features are never written."""


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
    #: How tiles were decoded (:func:`~her2viewer.features.rawtiles.patch_reader`'s words).
    decode: str = "openslide"

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
        self.dtype = autocast_dtype(self.encoder, self.device)
        module = self.encoder.module.to(self.device).eval()
        if self.cuda:
            module = module.to(memory_format=torch.channels_last)
            torch.backends.cudnn.benchmark = True  # fixed batch shapes: tune the convolutions
        self.module = module

    @property
    def resizes_on_device(self) -> bool:
        """True when tiles reach :meth:`__call__` at their read size (CUDA)."""
        return self.cuda and self.encoder.input_size is not None

    @torch.inference_mode()
    def __call__(self, batch: torch.Tensor) -> np.ndarray:
        """Encode a uint8 (B, S, S, 3) batch; returns float32 (B, D) on the CPU.

        ``S`` is the encoder's input size, or any tile size when
        :attr:`resizes_on_device`. A batch float16 overflows (non-finite features) is
        computed again in float32, and so are the following ones.
        """
        x = self.encoder.normalise(batch.to(self.device, non_blocking=True))
        layout = torch.channels_last if self.cuda else torch.contiguous_format
        x = x.contiguous(memory_format=layout)
        if self.resizes_on_device:
            x = self.encoder.resize_batch(x)
        out = self._forward(x)
        if self.dtype == torch.float16 and not np.isfinite(out).all():
            self.dtype = torch.float32
            out = self._forward(x)
        return out

    def _forward(self, x: torch.Tensor) -> np.ndarray:
        """The encoder on a normalised batch, under autocast to :attr:`dtype`."""
        with torch.autocast(self.device.type, self.dtype, enabled=self.dtype != torch.float32):
            return self.module(x).float().cpu().numpy()


#: The registry's ``precision`` names as torch dtypes.
PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def autocast_dtype(encoder: Encoder, device: torch.device) -> torch.dtype:
    """The dtype ``encoder`` computes in on ``device``.

    On CUDA, the registry's ``precision`` of the model, which is TRIDENT's (float16 for
    UNI, CONCH v1.5, Virchow2, Prov-GigaPath, H-optimus; bfloat16 for UNI2-h, or
    float32 on a GPU without bfloat16, whose range float16 lacks; float32 for
    Phikon-v2, Hibou-L, Kaiko and Lunit), float16 for an encoder outside the registry;
    a float16 batch that overflows is computed again in float32
    (:meth:`DeviceRunner.__call__`). float32 on other devices.
    """
    if device.type != "cuda":
        return torch.float32
    spec = SPECS.get(encoder.name)
    precision = spec.precision if spec is not None else "fp16"
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        return torch.float32
    return PRECISIONS[precision]


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
    decode: str = "openslide",
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
    decode : str
        ``"openslide"`` (per tile, on the decoding threads), or ``"raw"``: the slide's raw
        JPEG tiles decoded in batches on the device where the slide allows it
        (:mod:`~her2viewer.features.rawtiles`); the result says which path ran.

    Raises
    ------
    Cancelled
        When cancelled; nothing is left behind.
    ModelError
        Bad arguments, an empty grid, or an encoder giving non-finite features
        (then nothing is left behind).
    OutputError
        When the file cannot be written (a full disk): rows written and flushed
        so far stay in the partial file and a later run resumes after them.
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
    prepare_output_dir(out_path.parent)
    partial = out_path.with_name(out_path.name + ".partial")
    start_time = time.perf_counter()
    resumed = _open_partial(partial, grid, encoder, slide)
    prepare = None if runner.resizes_on_device else encoder.prepare_tile
    reader, decode = patch_reader(slide, grid, runner.device, decode, prepare)
    try:
        with _writable_h5(partial) as h5:
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
                reader,
            )
            if pt_path is not None:
                save_pt_atomic(pt_path, h5["features"][:])
            _finish_partial(h5, partial)
        _publish(partial, out_path)
    except (Cancelled, NonFiniteFeatures):
        partial.unlink(missing_ok=True)
        raise
    return ExtractionResult(
        out_path,
        len(grid),
        encoder.dim,
        time.perf_counter() - start_time,
        resumed,
        str(runner.device),
        decode,
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


def patches_per_job(batch_size: int, workers: int) -> int:
    """Patches one decoding job reads and resizes, on ``workers`` threads filling batches of
    ``batch_size`` (raw tiles decoded on CUDA go a batch per job instead): two jobs per
    thread and batch, 4 on the CPU's defaults.

    ``benchmarks/bench_extract.py`` on a 2-core machine, 1361 patches, its encoder swapped
    for a trivial one so that decoding is what the run waits on: 723 patches/s with 4 per
    job, 726 with 8, 647 with 16, 693 with 32 (medians of 5 interleaved runs); with the
    default encoder the run is the encoder's (4-10 patches/s) whatever the job size.
    """
    return max(1, batch_size // (2 * workers))


def _open_partial(partial: Path, grid: PatchGrid, encoder: Encoder, slide: Slide) -> int:
    """Return the rows a partial file holds intact for this very job; start afresh otherwise.

    The file's disk space is reserved before any row is written, so a full disk
    is met here, as one sentence, and never by the HDF5 library in the middle of a
    write (which it does not survive).
    """
    done = _verified_rows(partial, grid, encoder, slide)
    if done is None:
        partial.unlink(missing_ok=True)
        _check_free_space(partial, len(grid) * (encoder.dim * 4 + 8 + 16) + HEADROOM)
        _create_partial(partial, grid, encoder, slide)
        done = 0
    try:
        _reserve_blocks(partial)
    except OSError as exc:
        if done == 0:
            partial.unlink(missing_ok=True)
        raise output_error(partial, exc) from exc
    return done


def _create_partial(partial: Path, grid: PatchGrid, encoder: Encoder, slide: Slide) -> None:
    """Write an empty partial file: coords, and features and checks allocated in full."""
    try:
        with h5py.File(partial, "w") as h5:
            add_coords_dataset(h5, grid, partial.parent)
            shape = (len(grid), encoder.dim)
            h5.create_dataset("features", shape=shape, dtype=np.float32, dcpl=_allocated())
            h5.create_dataset(ROW_CHECK, shape=shape[:1], dtype=np.int64, dcpl=_allocated())
            h5.attrs.update(
                {
                    "encoder": encoder.name,
                    "encoder_identity": encoder.identity,
                    "encoder_description": json.dumps(encoder.describe(), sort_keys=True),
                    "slide_fingerprint": slide.info.fingerprint,
                    "n_done": 0,
                }
            )
    except (OSError, RuntimeError) as exc:
        partial.unlink(missing_ok=True)
        raise hdf5_output_error(partial, exc) from exc


def _allocated() -> h5py.h5p.PropDCID:
    """Dataset creation properties: contiguous, allocated in the file when created."""
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
    dcpl.set_fill_time(h5py.h5d.FILL_TIME_NEVER)
    return dcpl


def _check_free_space(path: Path, needed: int) -> None:
    """Raise the full-disk :class:`OutputError` when ``path``'s disk has less than ``needed``."""
    if shutil.disk_usage(path.parent).free < needed:
        raise output_error(path, OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)))


def _reserve_blocks(path: Path) -> None:
    """Give every byte of ``path`` real disk blocks, so overwriting it cannot meet ENOSPC."""
    if not hasattr(os, "posix_fallocate"):  # macOS: the free-space check has to do
        return
    fd = os.open(path, os.O_RDWR)
    try:
        os.posix_fallocate(fd, 0, os.fstat(fd).st_size)
    finally:
        os.close(fd)


def _verified_rows(partial: Path, grid: PatchGrid, encoder: Encoder, slide: Slide) -> int | None:
    """Count the leading rows of a partial file that belong to this job and read back intact.

    A row counts when it is finite and its stored check (:func:`row_checks`) matches,
    so rows lost to a full disk or a crash (read back as zeros) are computed again.
    Returns None when there is no usable partial file for this slide, encoder and grid.
    """
    if not partial.is_file():
        return None
    try:
        with h5py.File(partial, "r") as h5:
            if not _same_job(h5, grid, encoder, slide):
                return None
            n_done = min(int(h5.attrs["n_done"]), len(grid))
            for start in range(0, n_done, VERIFY_ROWS):
                end = min(start + VERIFY_ROWS, n_done)
                rows = h5["features"][start:end]
                good = np.isfinite(rows).all(axis=1) & (
                    row_checks(rows) == h5[ROW_CHECK][start:end]
                )
                if not good.all():
                    return start + int(np.argmin(good))
            return n_done
    except (OSError, RuntimeError, KeyError, ValueError, TypeError):
        return None


def _same_job(h5: h5py.File, grid: PatchGrid, encoder: Encoder, slide: Slide) -> bool:
    """True when a partial file was started for this slide, encoder and patch grid."""
    attrs = h5["coords"].attrs
    return (
        h5["features"].chunks is None  # allocated in full (older partial files were not)
        and h5.attrs["encoder_identity"] == encoder.identity
        and h5.attrs["slide_fingerprint"] == slide.info.fingerprint
        and h5["features"].shape == (len(grid), encoder.dim)
        and int(attrs["patch_level"]) == grid.patch_level
        and int(attrs["patch_size"]) == grid.patch_size
        and int(attrs["target_patch_size"]) == grid.target_size
        and np.array_equal(h5["coords"][:], grid.coords)
    )


def row_checks(rows: np.ndarray) -> np.ndarray:
    """Return a check of each float32 row: its CRC-32 plus one, never 0.

    Rows that never reached the disk read back as zeros with a zero check, so
    they never match.
    """
    rows = np.ascontiguousarray(rows, dtype=np.float32)
    return np.array([zlib.crc32(row.tobytes()) + 1 for row in rows], dtype=np.int64)


@contextlib.contextmanager
def _writable_h5(path: Path) -> Iterator[h5py.File]:
    """Open an h5 file for appending; a failure to open or close it is an OutputError."""
    try:
        h5 = h5py.File(path, "a")
    except OSError as exc:
        raise hdf5_output_error(path, exc) from exc
    try:
        yield h5
    except BaseException:
        with contextlib.suppress(OSError, RuntimeError):
            h5.close()
        raise
    try:
        h5.close()
    except (OSError, RuntimeError) as exc:
        raise hdf5_output_error(path, exc) from exc


def _store_rows(h5: h5py.File, start: int, rows: np.ndarray) -> None:
    """Write rows and their checks, flush them, and only then count them as done.

    The file is flushed to the operating system, not fsynced, per batch: a crash
    or kill loses nothing flushed, and rows a power cut loses fail their checks
    when the run is resumed. The finished file is fsynced before it is renamed.
    """
    try:
        h5["features"][start : start + len(rows)] = rows
        h5[ROW_CHECK][start : start + len(rows)] = row_checks(rows)
        h5.flush()
        h5.attrs["n_done"] = start + len(rows)
        h5.flush()
    except (OSError, RuntimeError) as exc:
        raise hdf5_output_error(h5.filename, exc) from exc


def _finish_partial(h5: h5py.File, partial: Path) -> None:
    """Drop the resume bookkeeping from a complete partial file."""
    try:
        del h5.attrs["n_done"]
        del h5[ROW_CHECK]
        h5.flush()
    except (OSError, RuntimeError) as exc:
        raise hdf5_output_error(partial, exc) from exc


def _publish(partial: Path, out_path: Path) -> None:
    """Flush a finished partial file to disk and rename it into place."""
    fsync_path(partial)
    try:
        os.replace(partial, out_path)
    except OSError as exc:
        raise output_error(out_path, exc) from exc


def _run_batches(
    slide, grid, runner, h5, first, batch_size, workers, prefetch, progress, on_batch, cancel, raw
) -> None:
    total = len(grid)
    starts = list(range(first, total, batch_size))
    if not starts:
        return
    resize = not runner.resizes_on_device
    side = runner.encoder.input_size if resize and runner.encoder.input_size else grid.target_size
    per_job = patches_per_job(batch_size, workers)
    n_buffers = min(prefetch + 1, len(starts))
    pin = runner.device.type == "cuda"
    buffers = [
        torch.empty((batch_size, side, side, 3), dtype=torch.uint8, pin_memory=pin)
        for _ in range(n_buffers)
    ]
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="decode") as pool:
        pending = deque()

        def submit(b: int) -> None:
            buffer = buffers[b % n_buffers].numpy()
            first, end = starts[b], min(starts[b] + batch_size, total)
            if raw is not None:  # a batch of raw tiles per job on CUDA, else per_job
                step = batch_size if raw.device.type == "cuda" else per_job
                jobs = [
                    pool.submit(raw.read, range(i, min(i + step, end)))
                    for i in range(first, end, step)
                ]
                pending.append((b, end - first, jobs))
                return
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
                parts = [job.result() for job in jobs]
                batch = buffers[b % n_buffers][:n]
                out = runner(_joined(parts, batch) if raw else batch)
                start = starts[b]
                if not np.isfinite(out).all():
                    raise NonFiniteFeatures(
                        f"The encoder gave non-finite features (NaN or Inf) for slide {grid.name}; "
                        "check the encoder weights."
                    )
                _store_rows(h5, start, out)
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


def _joined(parts: list[torch.Tensor], buffer: torch.Tensor) -> torch.Tensor:
    """A raw batch's parts in one tensor: in ``buffer`` (pinned memory on a CUDA run, so
    the copy to the device is asynchronous) when they are on the CPU."""
    if parts[0].device != buffer.device:
        return torch.cat(parts)
    return torch.cat(parts, out=buffer)


def _decode_into(slide, grid, encoder, resize: bool, rows: range, out: np.ndarray) -> None:
    """Decode patches ``rows`` into ``out[0], out[1], ...``, resized to the encoder's input
    when ``resize``."""
    for slot, index in enumerate(rows):
        tile = grid.read_patch(slide, index)
        out[slot] = encoder.prepare_tile(tile) if resize else tile
