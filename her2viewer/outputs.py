"""Writing output files so that nothing is ever half-written or lost.

Every file the project writes (features, masks, heatmaps, JSON, CSV, reports,
screenshots) goes through :func:`atomic_output`: the content is written to a
hidden temporary file in the destination folder, flushed to disk, and only then
renamed over the destination. A failure at any point (a full disk, a folder
that cannot be written, a kill) leaves the destination as it was and no
temporary file behind, and an :class:`OSError` becomes one :class:`OutputError`
sentence naming the file and the cause.

:func:`prepare_output_dir` checks an output folder before a long job starts, so
a job does not compute for minutes and then fail on an unwritable folder.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

from her2viewer.errors import OutputError

#: Plain-language causes for the ``errno`` values a user can provoke.
_CAUSES = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is exceeded",
    errno.EACCES: "permission denied",
    errno.EPERM: "the operation is not permitted",
    errno.EROFS: "the file system is read-only",
    errno.EISDIR: "it is a folder",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.ENOENT: "the folder does not exist",
    errno.ENAMETOOLONG: "the name is too long",
    errno.EFBIG: "the file is too large",
    errno.EIO: "an input/output error occurred",
}


def describe_os_error(exc: OSError) -> str:
    """Return a short plain-language cause for an operating-system error."""
    return _CAUSES.get(exc.errno, exc.strerror or type(exc).__name__)


def output_error(path: str | os.PathLike, exc: OSError, what: str = "write") -> OutputError:
    """Return the one-sentence :class:`OutputError` for ``exc`` raised while writing ``path``."""
    return OutputError(f"cannot {what} {Path(path)}: {describe_os_error(exc)}.")


def hdf5_output_error(path: str | os.PathLike, exc: Exception) -> OutputError:
    """Return the one-sentence :class:`OutputError` for an h5py failure while writing ``path``.

    HDF5 reports the operating-system cause inside its message (``errno = 28``)
    rather than in ``exc.errno``; both are understood.
    """
    if isinstance(exc, OSError) and exc.errno is not None:
        return output_error(path, exc)
    found = re.search(r"errno = (\d+)", str(exc))
    if found is None:
        return OutputError(f"cannot write {Path(path)}: the HDF5 library failed ({exc}).")
    code = int(found.group(1))
    return OutputError(f"cannot write {Path(path)}: {_CAUSES.get(code, os.strerror(code))}.")


def _fsync_dir(folder: Path) -> None:
    """Flush a folder's entry table so a rename survives a power cut (best effort)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def fsync_path(path: str | os.PathLike) -> None:
    """Flush a closed file's data to disk, raising :class:`OutputError` on failure."""
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise output_error(path, exc) from exc


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, *, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path to write; rename it to ``path`` only if the block succeeds.

    The temporary file lives in the destination's folder (so the rename is
    atomic) and starts with a dot (so it is never mistaken for a result). Its
    data is flushed to disk before the rename.

    Parameters
    ----------
    path : str or os.PathLike
        The destination file. Its folder must exist.
    overwrite : bool
        When False, an existing destination is an error instead of being replaced.

    Yields
    ------
    Path
        Where to write the content (any writer: ``open``, ``h5py``, ``cv2``, PIL, Qt).

    Raises
    ------
    OutputError
        One sentence naming the file when the folder is missing or unwritable,
        the destination is a folder, the disk is full, or any other
        operating-system error occurs. The destination is then left untouched.
    """
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"cannot write {path}: it is a folder.")
    if not overwrite and path.exists():
        raise OutputError(f"{path} already exists; choose another name or remove it first.")
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
    except OSError as exc:
        raise output_error(path, exc) from exc
    tmp = Path(tmp_name)
    try:
        _give_usual_mode(tmp, path)
        yield tmp
        if not tmp.exists() or tmp.stat().st_size == 0 and not _may_be_empty(path):
            raise OutputError(f"cannot write {path}: the writer produced no data.")
        fsync_path(tmp)
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except OSError as exc:
        raise output_error(path, exc) from exc
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


def _give_usual_mode(tmp: Path, path: Path) -> None:
    """Give the temporary file the mode the destination would get from ``open``.

    ``mkstemp`` creates files readable by their owner only; an output keeps the
    mode of the file it replaces, or gets 0o666 less the umask like any new file.
    """
    mode = path.stat().st_mode & 0o7777 if path.exists() else 0o666 & ~_umask()
    os.chmod(tmp, mode)


def _umask() -> int:
    """Return the process umask, read without changing it where the system allows."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    umask = os.umask(0o022)  # no /proc: set and restore (not thread-safe, rare platforms)
    os.umask(umask)
    return umask


def _may_be_empty(path: Path) -> bool:
    """Return True for text outputs where an empty file is a legitimate result."""
    return path.suffix.lower() in {".txt", ".csv", ".tsv", ".log"}


def write_text_atomic(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically and return the path."""
    with atomic_output(path) as tmp, open(tmp, "w", encoding=encoding, newline="") as handle:
        handle.write(text)
    return Path(path)


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically and return the path."""
    with atomic_output(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def prepare_output_dir(path: str | os.PathLike) -> Path:
    """Create ``path`` (and its parents) if needed and check files can be written in it.

    Raises
    ------
    OutputError
        One sentence when ``path`` is an existing file, cannot be created, or is
        not writable.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"cannot use {path} as an output folder: it is a file.")
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-check.", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise output_error(path, exc, what="write into") from exc
    return path


def check_output_file(path: str | os.PathLike) -> Path:
    """Check before a long job that ``path`` can later be written as a file.

    The parent folder must exist (or be creatable) and be writable, and
    ``path`` must not be a folder.
    """
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"cannot write {path}: it is a folder.")
    prepare_output_dir(path.parent if str(path.parent) else Path("."))
    return path
