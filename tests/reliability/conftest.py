"""Fixtures for the reliability tests: a real full disk, and running verbs as a user does."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest


@pytest.fixture()
def tiny_disk(tmp_path):
    """Return a factory ``tiny_disk(size_kb)`` giving a fresh folder on a tmpfs of that size.

    The folder is a real small file system, so writers meet a genuine ENOSPC
    (from Python, h5py, OpenCV or Qt alike). Mounting needs root, which the
    development machines and CI have; elsewhere the test fails with the reason.
    """
    mounts: list[Path] = []

    def make(size_kb: int = 256) -> Path:
        point = tmp_path / f"disk-{uuid.uuid4().hex[:8]}"
        point.mkdir()
        result = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(point)],
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            pytest.fail(f"cannot mount a small tmpfs for the full-disk test: {result.stderr}")
        mounts.append(point)
        return point

    yield make
    for point in mounts:
        subprocess.run(["umount", "-l", str(point)], capture_output=True)


def fill_disk(folder: Path, leave_bytes: int = 0) -> None:
    """Fill the file system holding ``folder`` until at most ``leave_bytes`` are free."""
    filler = folder / ".filler"
    with filler.open("wb") as handle:
        try:
            while True:
                free = os.statvfs(folder).f_bavail * os.statvfs(folder).f_frsize
                if free <= leave_bytes:
                    break
                handle.write(b"\0" * min(65536, max(1, free - leave_bytes)))
                handle.flush()
        except OSError:
            pass


def run_verb(
    *args: str, cwd: Path | None = None, timeout: float = 300
) -> subprocess.CompletedProcess:
    """Run ``her2viewer ARGS`` in a fresh interpreter, offscreen; return the finished process."""
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    return subprocess.run(
        [sys.executable, "-m", "her2viewer", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=timeout,
    )


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    """Check a verb failed as rule 6 asks: exit 2, one line on stderr, no traceback."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    assert len(lines) == 1, result.stderr[-2000:]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def leftovers(folder: Path) -> list[Path]:
    """Return temporary or partial files left anywhere under ``folder``."""
    return [
        p
        for p in folder.rglob("*")
        if p.name.endswith((".partial", ".tmp")) or p.name.startswith(".write-check")
    ]


def one_line_error(capsys, *fragments: str) -> str:
    """Check an in-process verb printed one line on stderr, no traceback, holding ``fragments``."""
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in err, err
    return err


def error_after_progress(err: str, *fragments: str) -> str:
    """Check the stderr of a verb that failed during its work: progress lines may come first,
    then its error is the one last line, with no traceback; return that line."""
    *progress, line = err.strip().splitlines()
    assert "Traceback" not in err and line.startswith("her2viewer: error: "), err
    assert all(re.search(r": \d+(/\d+)? ", p) and "error" not in p for p in progress), err
    for fragment in fragments:
        assert fragment in line, line
    return line


def last_line_error(capsys, *fragments: str) -> str:
    """:func:`error_after_progress` for an in-process verb."""
    return error_after_progress(capsys.readouterr().err, *fragments)
