"""Progress of the long verbs: a rich bar in a terminal, plain rate-limited lines otherwise."""

from __future__ import annotations

import argparse
import os
import pty
import re
import subprocess
import sys

import pytest

from her2viewer.cli import progress as progress_module
from her2viewer.cli.main import main
from her2viewer.cli.progress import PlainReporter, progress_reporter
from tests.reliability.conftest import fill_disk, run_verb, tiny_disk  # noqa: F401 - a fixture

#: A plain progress line of demo-data, with or without the rate and ETA.
DEMO_LINE = re.compile(r"^demo-data: \d+/\d+ cases( \(\d+\.\d/s(, ETA [\w ]+)?\))?$")
TINY = ["--size", "512x512"]


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture()
def clock(monkeypatch):
    """Replace the progress module's clock."""
    fake = Clock()
    monkeypatch.setattr(progress_module.time, "monotonic", fake)
    return fake


def test_plain_lines_are_rate_limited_with_count_rate_and_eta(clock, capsys):
    reporter = PlainReporter("extract", "patches")
    for done in range(0, 1001):
        reporter(done, 1000)
        clock.now += 0.001  # 1000 patches/s, a report each millisecond
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 11  # the first, one per tenth, the last is the tenth tenth
    assert lines[0] == "extract: 0/1000 patches"
    assert lines[4] == "extract: 400/1000 patches (1000.0/s, ETA 1 s)"
    assert lines[-1] == "extract: 1000/1000 patches (1000.0/s)"


def test_plain_lines_come_at_least_every_five_seconds(clock, capsys):
    reporter = PlainReporter("her2net train", "steps")
    for done in range(1, 6):
        reporter(done, 1000, "slow stage")
        clock.now += 6.0
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 5
    assert lines[-1] == "her2net train: 5/1000 steps (0.2/s, ETA 1 h 39 min) - slow stage"


def test_a_new_stage_starts_its_own_lines_and_rate(clock, capsys):
    reporter = PlainReporter("clam train", "epochs")
    reporter(3, 3)
    clock.now += 10
    reporter.stage("clam train fold_1 (2/3)")
    reporter(1, 3, "val loss 0.5")
    reporter(1, 3, "val loss 0.5")  # the same count again prints nothing
    assert capsys.readouterr().err.splitlines() == [
        "clam train: 3/3 epochs",
        "clam train fold_1 (2/3): 1/3 epochs - val loss 0.5",
    ]


def test_quiet_and_job_context_reports(capsys):
    with progress_reporter(argparse.Namespace(progress=False), "register", "steps") as quiet:
        quiet.context().report(1, 5, "tissue")
    with progress_reporter(argparse.Namespace(progress=True), "register", "steps") as plain:
        plain.context().report(1, 5, "tissue")
    assert capsys.readouterr().err == "register: 1/5 steps - tissue\n"


def test_demo_data_draws_a_rich_bar_under_a_pseudo_terminal(tmp_path):
    master, slave = pty.openpty()
    env = dict(os.environ, TERM="xterm", COLUMNS="120", QT_QPA_PLATFORM="offscreen")
    command = [sys.executable, "-m", "her2viewer", "demo-data", str(tmp_path / "c"), "--cases"]
    child = subprocess.Popen(
        [*command, "2", *TINY], stdin=slave, stdout=slave, stderr=slave, env=env
    )
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    assert child.wait(timeout=120) == 0
    terminal = b"".join(chunks).decode("utf-8", "replace")
    screen = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", terminal)  # without colours and moves
    assert "━" in screen and "ETA" in screen  # rich's bar and our ETA column
    assert re.search(r"2/2 cases \d+\.\d/s", screen), screen[-2000:]
    assert "wrote 2 synthetic cases" in screen


def test_demo_data_without_a_terminal_prints_plain_lines(tmp_path):
    result = run_verb("demo-data", str(tmp_path / "c"), "--cases", "3", *TINY)
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert lines and all(DEMO_LINE.match(line) for line in lines), lines
    assert lines[0] == "demo-data: 0/3 cases" and lines[-1].startswith("demo-data: 3/3 cases (")
    assert "\x1b" not in result.stderr and "\r" not in result.stderr
    assert "wrote 3 synthetic cases" in result.stdout


def test_quiet_prints_nothing_on_stderr(tmp_path, capsys):
    assert main(["demo-data", str(tmp_path / "c"), "--cases", "1", *TINY, "--quiet"]) == 0
    captured = capsys.readouterr()
    assert captured.err == "" and "wrote 1 synthetic cases" in captured.out


def test_an_error_before_the_work_comes_before_any_progress_line(tmp_path, capsys):
    (tmp_path / "taken").write_text("a file where the cohort folder goes")
    assert main(["demo-data", str(tmp_path / "taken"), "--cases", "1", *TINY]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("her2viewer: error:"), err


def test_an_error_during_the_work_is_the_last_line(tiny_disk, capsys):  # noqa: F811
    disk = tiny_disk(256)
    fill_disk(disk, leave_bytes=60_000)
    assert main(["demo-data", str(disk / "c"), "--cases", "2", "--size", "1024x1024"]) == 2
    *progress, last = capsys.readouterr().err.splitlines()
    assert progress and all(DEMO_LINE.match(line) for line in progress), progress
    assert last.startswith("her2viewer: error:") and "disk is full" in last, last


def test_the_bar_ends_on_its_own_line_when_the_verb_fails(monkeypatch, capsys):
    monkeypatch.setattr(progress_module, "stderr_is_terminal", lambda: True)
    with pytest.raises(RuntimeError), progress_reporter(argparse.Namespace(), "x", "cases") as r:
        r(1, 2, "half way")
        raise RuntimeError("the verb failed")
    err = capsys.readouterr().err
    assert "━" in err and "1/2" in err
    assert err.removesuffix("\x1b[?25h").endswith("half way\n")  # drawn, then a new line
