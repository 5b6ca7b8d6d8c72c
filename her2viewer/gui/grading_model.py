"""The grading dock's worker side: the grading CNN kept loaded from one run to the next.

The dock's jobs run in the app's worker process (:mod:`her2viewer.jobs.worker`), which
lives as long as the app. :func:`grade_kept` is the contract function the dock runs
there: it keeps the last patch CNN it loaded, keyed by the checkpoint's path, its
modification time and the device, so a second run (another region, the slide again)
does not load it again, while a checkpoint rewritten since, another checkpoint or
another device loads afresh. One model is kept per process: the dock's Grad-CAM, which
runs on a thread of the app, asks :func:`kept_model` too. Qt-free, so the worker never
imports Qt.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from her2viewer.analysis.grade import GradeOptions, GradeResult, analyse_grade
from her2viewer.devices import choose_device
from her2viewer.jobs import JobContext
from her2viewer.models.patch_cnn import default_grading_bundle, load_patch_cnn
from her2viewer.slide import Slide

#: The one model kept: ``{key: (network, metadata)}`` (see :func:`kept_model`).
_kept: dict[tuple, tuple[nn.Module, dict]] = {}


def checkpoint_stamp(path: Path) -> int | None:
    """The latest modification time (ns) of a checkpoint file, or of any file in a bundle
    folder; None when it cannot be read (loading it then says why)."""
    try:
        files = [path, *path.rglob("*")] if path.is_dir() else [path]
        return max(f.stat().st_mtime_ns for f in files)
    except OSError:
        return None


def kept_model(bundle: str | Path, arch: str | None, device: str) -> tuple[nn.Module, dict]:
    """The patch CNN of ``bundle`` as :func:`load_patch_cnn` returns it, loaded only when
    the kept one is of another checkpoint, modification time, architecture or device.

    Raises
    ------
    ModelError
        When the checkpoint cannot be loaded or the device is not available.
    """
    path = Path(bundle)
    key = (str(path.resolve()), checkpoint_stamp(path), arch, str(choose_device(device)))
    if key not in _kept:
        _kept.clear()  # the previous model goes before the next one loads
        _kept[key] = load_patch_cnn(path, arch=arch)
    return _kept[key]


def grade_kept(
    slide: Slide,
    bundle: str | Path | None,
    options: GradeOptions | None,
    context: JobContext | None,
) -> GradeResult:
    """:func:`~her2viewer.analysis.grade.analyse_grade` with the kept model."""
    options = options or GradeOptions()
    model = kept_model(bundle or default_grading_bundle(), options.arch, options.device)
    return analyse_grade(slide, bundle, options, context, model=model)
