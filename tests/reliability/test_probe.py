"""The hostile-input probe (benchmarks/probe_inputs.py): its classifier and its JSON report.

These tests check the probe itself, not that the project passes it: the full probe is run
by hand and its counts are quoted in the issue.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from her2viewer.cli import build_parser

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "probe_inputs.py"


@pytest.fixture(scope="module")
def probe():
    """The probe script imported as a module."""
    spec = importlib.util.spec_from_file_location("probe_inputs", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def done(returncode, stdout="", stderr=""):
    """A finished process as subprocess.run returns it."""
    return subprocess.CompletedProcess(["her2viewer"], returncode, stdout, stderr)


ONE_LINE = "her2viewer: error: cannot open x.svs: not a slide.\n"
TRACEBACK = 'Traceback (most recent call last):\n  File "x.py", line 1\nValueError: boom\n'
USAGE = "usage: her2viewer patch [-h] [--size SIZE]\n                        SLIDE\n"


@pytest.mark.parametrize(
    ("result", "expect", "kind"),
    [
        (done(2, stderr=ONE_LINE), "error", None),
        (done(-11), "error", "crash"),
        (done(-6, stderr="Aborted"), "clean", "crash"),
        (done(1, stderr=TRACEBACK), "error", "traceback"),
        (done(0, stdout=TRACEBACK), "ok", "traceback"),
        (done(0, stdout="prediction: negative"), "error", "wrong_result"),
        (done(3, stderr=ONE_LINE), "error", "wrong_exit_code"),
        (done(1, stderr=ONE_LINE), "clean", "wrong_exit_code"),
        (done(2, stderr=ONE_LINE + "and a second line\n"), "error", "multi_line_error"),
        (done(2, stderr=ONE_LINE), "ok", "wrong_exit_code"),
        (done(0, stdout="HER2 IHC score 0: HER2 negative"), "not_evaluable", "wrong_result"),
        (done(0, stdout="not evaluable: no tissue found"), "not_evaluable", None),
        (done(0, stdout='{"status": "not_evaluable"}'), "not_evaluable", None),
        (done(2, stderr=ONE_LINE), "not_evaluable", None),
        (done(0, stdout="P = 20%, HER2 positive"), "demo_notice", "wrong_result"),
        (
            done(0, stdout="HER2 positive (synthetic demo model, no clinical meaning)"),
            "demo_notice",
            None,
        ),
        (
            done(2, stderr="her2viewer: error: x.pt: This file can still be loaded"),
            "error",
            "wrong_result",
        ),
        (done(0), "clean", None),
        (done(2, stderr=ONE_LINE), "clean", None),
    ],
)
def test_classify(probe, result, expect, kind):
    assert probe.classify(result, expect) == kind


def test_classify_hang_and_option(probe):
    assert probe.classify(done(-9), "error", timed_out=True) == "hang"
    rejected = USAGE + "her2viewer patch: error: argument --size: 'x' is not a whole number\n"
    assert probe.classify(done(2, stderr=rejected), "error", option="--size") is None
    assert probe.classify(done(2, stderr=ONE_LINE), "error", option="--size") == "wrong_result"
    late = "her2viewer: error: patch size must be positive.\n"
    assert probe.classify(done(2, stderr=late), "error", option="--patch-size") is None


def test_numeric_probes_cover_every_numeric_option(probe):
    probes = probe.numeric_probes(build_parser())
    options = {(p.verb, p.option) for p in probes}
    assert ("patch", "--size") in options
    assert ("view", "--magnification") in options
    assert ("study mcnemar-range", "--correct-a") in options
    values = {p.args.split(p.option)[1].split()[0] for p in probes if p.verb == "view"}
    assert {"nan", "inf", "-1", "x"} <= values
    assert all(p.expect in ("error", "clean") for p in probes)


def test_probe_table_is_a_few_hundred_over_every_verb(probe):
    from her2viewer.cli import build_parser

    probes = probe.all_probes(build_parser())
    verbs = {verb for verb, _ in probe.leaf_parsers(build_parser())}
    assert verbs <= {p.verb for p in probes}
    assert len(probes) >= 300
    assert 15 <= sum(map(probe.is_quick, probes)) <= 30


def test_quick_run_prints_the_report(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--quick",
            "--only",
            "info",
            "--jobs",
            "2",
            "--timeout",
            "120",
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)
    assert set(report) == {
        "source",
        "tried",
        "passed",
        "failed",
        "by_kind",
        "in_process",
        "failures",
    }
    assert report["tried"] == report["passed"] + report["failed"] >= 4
    assert set(report["by_kind"]) >= {"crash", "hang", "traceback", "wrong_result", "leftovers"}
    assert sum(report["by_kind"].values()) == report["failed"] == len(report["failures"])
    for failure in report["failures"]:
        assert {"verb", "probe", "args", "kind", "last_stderr"} <= set(failure)


def test_post_checks_find_leftovers_files_outside_and_missing_outputs(probe, tmp_path):
    ctx = {"sandboxes": str(tmp_path / "runs"), "inputs": str(tmp_path / "in"), "he": "he.svs"}
    (tmp_path / "in").mkdir()
    screenshot = probe.Probe("view", "{he}", "ok", "t", outputs=("{out}/v.png",))
    job = probe.prepare(0, screenshot, ctx)
    assert probe.post_checks(job, probe.Outcome(2), ctx) is None
    assert probe.post_checks(job, probe.Outcome(0), ctx) == "wrong_result"
    (job.out / "v.png").write_bytes(b"png")
    assert probe.post_checks(job, probe.Outcome(0), ctx) is None
    (job.out / "v.png.partial").write_bytes(b"")
    assert probe.post_checks(job, probe.Outcome(2), ctx) == "leftovers"
    (job.out.parent / "escaped.h5").write_text("x")
    assert probe.post_checks(job, probe.Outcome(2), ctx) == "written_outside"
