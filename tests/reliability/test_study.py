"""Reader studies under hostile input (issue 13 items 2, 8, 10, 12, 14, 18).

Formula injection in every CSV, the blinding of reader packages, no display,
impossible or non-finite values, damaged files, full disks, immutable files and
half-written reports.
"""

from __future__ import annotations

import contextlib
import csv
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from study_util import make_study, write_csv

from her2viewer.cli import main
from her2viewer.errors import StudyError
from her2viewer.study.reading import ReadingSession
from her2viewer.study.store import StudyStore
from her2viewer.tables import FORMULA_PREFIXES
from tests.reliability.conftest import (
    assert_one_line_error,
    error_after_progress,
    fill_disk,
    leftovers,
)

HOSTILE = ['=HYPERLINK("http://evil","x")', "=cmd|' /C calc'!A0", "+1+2", "@SUM(A1)", "-3"]


def _cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def _one_line(code: int, err: str, *fragments: str) -> None:
    assert code == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in err, err


def _answers(study: Path) -> int:
    with StudyStore(study, readonly=True) as store:
        return len(store.answers(current_only=False))


@contextlib.contextmanager
def _immutable(path: Path):
    subprocess.run(["chattr", "+i", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


# -- item 8: formula injection ------------------------------------------------------------


def _hostile_study(tmp_path: Path) -> Path:
    """A study whose case ids, reader names and comments are spreadsheet formulas."""
    ids = ["=1+1", "+cmd", "@x", "-2", "plain", "=A1"]
    cases = write_csv(tmp_path / "cases.csv", "case_id,he_path", [f'"{c}",x.svs' for c in ids])
    truth = write_csv(
        tmp_path / "truth.csv", "case_id,truth",
        [f'"{c}",{("positive", "negative")[i % 2]}' for i, c in enumerate(ids)],
    )  # fmt: skip
    study = tmp_path / "hostile.h2study"
    assert main(["study", "create", str(study), "--cases", str(cases), "--question", "status",
                 "--truth", str(truth), "--seed", "1"]) == 0  # fmt: skip
    rows = []
    for r, reader in enumerate(HOSTILE[:2]):
        for i, case_id in enumerate(ids):
            comment = HOSTILE[(i + r) % len(HOSTILE)].replace('"', '""')
            answer = ("positive", "negative")[(i + r) % 2]
            rows.append(f'"{reader.replace(chr(34), 2 * chr(34))}","{case_id}",{answer},'
                        f'{10 + i},"{comment}"')  # fmt: skip
    answers = write_csv(tmp_path / "answers.csv", "reader,case_id,answer,seconds,comment", rows)
    assert main(["study", "import", str(study), str(answers)]) == 0
    return study


def _assert_inert(path: Path) -> int:
    """Check no cell of a CSV starts like a formula; return the number of cells read."""
    with path.open(newline="", encoding="utf-8") as handle:
        cells = [cell for row in csv.reader(handle) for cell in row]
    bad = [cell for cell in cells if cell.startswith(FORMULA_PREFIXES)]
    assert not bad, f"{path.name}: {bad[:5]}"
    return len(cells)


def test_export_and_report_csvs_escape_formulas(tmp_path, capsys):
    study = _hostile_study(tmp_path)
    code, _, err = _cli(capsys, "study", "export", study, "-o", tmp_path / "export.csv")
    assert code == 0, err
    text = (tmp_path / "export.csv").read_text(encoding="utf-8")
    assert "'=cmd|' /C calc'!A0" in text and "'=1+1" in text and "'@SUM(A1)" in text
    _assert_inert(tmp_path / "export.csv")
    code, _, err = _cli(capsys, "study", "report", study, "-o", tmp_path / "rep", "--bootstrap", 20)
    assert code == 0, err
    written = list((tmp_path / "rep").glob("*.csv"))
    assert {"answers.csv", "reading_time.csv", "metrics.csv"} <= {p.name for p in written}
    assert sum(_assert_inert(p) for p in written) > 100


# -- item 10: blinding ----------------------------------------------------------------------


def test_reader_package_holds_no_truth_and_report_export_results_refuse(tmp_path, capsys):
    study = make_study(tmp_path, arms=("unassisted", "assisted"))
    package = tmp_path / "for_ann.h2study"
    code, out, err = _cli(capsys, "study", "export-for-reader", study, "-o", package)
    assert code == 0 and "without the truth" in out, err
    raw = sqlite3.connect(package)
    for table in ("truth", "model_predictions", "model_overlays", "answers"):
        assert raw.execute(f"SELECT COUNT(*) FROM {table}").fetchone() == (0,), table
    raw.close()
    assert b"0.8731" not in package.read_bytes()
    for argv in (
        ("report", package, "-o", tmp_path / "rep"),
        ("export", package, "-o", tmp_path / "e.csv"),
    ):
        code, _, err = _cli(capsys, "study", *argv)
        _one_line(code, err, "reader package without the truth", "owner's file")
    assert not (tmp_path / "rep").exists() and not (tmp_path / "e.csv").exists()
    code, _, err = _cli(capsys, "study", "results", package)
    _one_line(code, err, "is a study file, not a report")
    with pytest.raises(StudyError, match="holds no model output"):
        ReadingSession(package, "ann", "assisted")
    with ReadingSession(package, "ann", "unassisted") as session:
        session.answer(0, "positive", seconds=12.0, comment="=cmd|' /C calc'!A0")
        session.answer(1, "negative", seconds=8.0)
    code, out, err = _cli(capsys, "study", "import", study, package)
    assert code == 0 and "imported 2 answers" in out, err
    code, out, _ = _cli(capsys, "study", "import", study, package)
    assert code == 0 and "imported 0 answers" in out  # a package imported twice adds nothing
    assert _answers(study) == 2
    with StudyStore(study) as store:
        assert {a.source for a in store.answers()} == {"package"}


def test_package_with_model_reads_the_assisted_arm_and_foreign_package_refused(tmp_path, capsys):
    study = make_study(tmp_path / "a", arms=("unassisted", "assisted"))
    package = tmp_path / "assisted.h2study"
    assert _cli(capsys, "study", "export-for-reader", study, "-o", package, "--with-model")[0] == 0
    with ReadingSession(package, "ann", "assisted") as session:
        assert session.case(0).model is not None
    other = make_study(tmp_path / "b", seed=8)
    code, _, err = _cli(capsys, "study", "import", other, package)
    _one_line(code, err, "reader package of another study")
    code, _, err = _cli(capsys, "study", "export-for-reader", package, "-o", tmp_path / "x")
    _one_line(code, err, "reader package")


# -- item 12: no display --------------------------------------------------------------------


def test_read_and_results_without_display_refuse_in_one_sentence(tmp_path):
    study = make_study(tmp_path)
    report = tmp_path / "rep"
    report.mkdir()
    summary = '{"study": {"file": "s"}, "readers": [], "reader_vs_model": []}'
    (report / "summary.json").write_text(summary, encoding="utf-8")
    env = {k: v for k, v in os.environ.items()
           if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}  # fmt: skip
    for argv in (("read", study, "--reader", "ann"), ("results", report)):
        result = subprocess.run(
            [sys.executable, "-m", "her2viewer", "study", *map(str, argv)],
            capture_output=True, text=True, env=env, timeout=300,
        )  # fmt: skip
        assert_one_line_error(result, "needs a display")


# -- items 2 and 18: impossible values ------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "row", "message"),
    [
        ("reader,case_id,answer,seconds", "ann,HER2POS_case00,positive,inf", "not a finite"),
        ("reader,case_id,answer,seconds", "ann,HER2POS_case00,positive,nan", "not a finite"),
        ("reader,case_id,answer,seconds", "ann,HER2POS_case00,positive,1e308", "reading time"),
        ("reader,case_id,answer,seconds", "ann,HER2POS_case00,positive,-5", "reading time"),
        ("reader,case_id,answer", "ann,HER2POS_case00,positive,surplus", "more cells"),
    ],
)
def test_import_refuses_impossible_rows(tmp_path, capsys, header, row, message):
    study = make_study(tmp_path)
    answers = write_csv(tmp_path / "a.csv", header, ["ben,HER2NEG_case01,negative", row])
    code, _, err = _cli(capsys, "study", "import", study, answers)
    _one_line(code, err, "a.csv line 3", message)
    assert _answers(study) == 0


def test_non_finite_model_output_is_refused(tmp_path, monkeypatch):
    from types import SimpleNamespace

    import her2viewer.analysis.clam as clam
    import her2viewer.slide as slide_module
    from her2viewer.study.definition import CaseRow, make_question
    from her2viewer.study.model import predict_cases

    heat = SimpleNamespace(
        class_names=["negative", "positive"],
        prediction=SimpleNamespace(probabilities=[np.nan, np.nan], prediction=0),
        downsample=16.0,
        values=np.zeros((4, 4), np.float32),
    )
    monkeypatch.setattr(clam, "analyse_clam", lambda *args, **kwargs: heat)
    monkeypatch.setattr(slide_module, "open_slide", lambda path: contextlib.nullcontext())
    slide = tmp_path / "c1.svs"
    slide.write_bytes(b"stand-in; the slide reader is replaced")
    case = CaseRow("c1", str(slide), "")
    with pytest.raises(StudyError, match="non-finite outputs on case c1"):
        predict_cases([case], make_question("status"), tmp_path / "bundle")


# -- item 18: damaged files -----------------------------------------------------------------


def _damage(study: Path, needle: bytes, page_header: bool) -> Path:
    """Flip bytes of a study file: a page header (structure) or a text value (UTF-8)."""
    data = bytearray(study.read_bytes())
    at = data.index(needle)
    if page_header:
        start = at // 4096 * 4096
        span = range(start, start + 8)
    else:
        span = range(at + 1, at + 5)
    for i in span:
        data[i] ^= 0xFF if page_header else 0x80
    damaged = study.with_name(f"damaged_{int(page_header)}.h2study")
    damaged.write_bytes(bytes(data))
    return damaged


@pytest.mark.parametrize(("needle", "page_header"), [(b"truth_NEG_03", True), (b'"labels"', False)])
def test_damaged_study_is_refused_by_every_verb(tmp_path, capsys, needle, page_header):
    study = make_study(tmp_path)
    damaged = _damage(study, needle, page_header)
    answers = write_csv(tmp_path / "a.csv", "reader,case_id,answer", ["ann,HER2POS_case00,pos"])
    for argv in (
        ("status", damaged),
        ("export", damaged, "-o", tmp_path / "e.csv"),
        ("report", damaged, "-o", tmp_path / "rep"),
        ("import", damaged, answers),
        ("export-for-reader", damaged, "-o", tmp_path / "p.h2study"),
    ):
        code, _, err = _cli(capsys, "study", *argv)
        _one_line(code, err, "damaged_", "is damaged", "restore it from a backup")
    assert not any((tmp_path / name).exists() for name in ("e.csv", "rep", "p.h2study"))


# -- items 14 and 18: full disks, immutable files, existing outputs ------------------------


def test_create_and_import_on_a_full_disk_lose_nothing(tmp_path, capsys, tiny_disk):
    make_study(tmp_path)
    disk = tiny_disk(256)
    study = disk / "study.h2study"
    argv = ("study", "create", study, "--cases", tmp_path / "cases.csv", "--question", "status")
    assert _cli(capsys, *argv)[0] == 0
    fill_disk(disk, 0)
    code, _, err = _cli(capsys, *argv[:2], disk / "second.h2study", *argv[3:])
    _one_line(code, err, "second.h2study", "the disk is full")
    big = [f"ann,HER2POS_case00,positive,5,{'x' * 400}"] * 2000
    answers = write_csv(tmp_path / "big.csv", "reader,case_id,answer,seconds,comment", big)
    code, _, err = _cli(capsys, "study", "import", study, answers)
    _one_line(code, err, "study.h2study", "nothing was changed")
    (disk / ".filler").unlink()
    assert _answers(study) == 0 and not (disk / "second.h2study").exists()
    assert not leftovers(disk)


def test_immutable_study_and_folder(tmp_path, capsys):
    study = make_study(tmp_path)
    before = study.read_bytes()
    answers = write_csv(tmp_path / "a.csv", "reader,case_id,answer", ["ann,HER2POS_case00,pos"])
    with _immutable(study):
        code, _, err = _cli(capsys, "study", "import", study, answers)
    _one_line(code, err, "study.h2study", "read-only", "nothing was changed")
    assert study.read_bytes() == before and _answers(study) == 0
    locked = tmp_path / "locked"
    locked.mkdir()
    with _immutable(locked):
        for argv in (
            ("create", locked / "s.h2study", "--cases", tmp_path / "cases.csv", "--question",
             "status"),
            ("export", study, "-o", locked / "e.csv"),
            ("report", study, "-o", locked / "rep"),
            ("export-for-reader", study, "-o", locked / "p.h2study"),
        ):  # fmt: skip
            code, _, err = _cli(capsys, "study", *argv)
            _one_line(code, err, str(locked), "not permitted")
    assert not any(locked.iterdir())


def test_existing_or_wrong_outputs_give_one_sentence(tmp_path, capsys):
    study = make_study(tmp_path)
    afile = tmp_path / "afile.txt"
    afile.write_text("keep me", encoding="utf-8")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me too", encoding="utf-8")
    cases = tmp_path / "cases.csv"
    for argv, fragment in (
        (("create", afile, "--cases", cases, "--question", "status"), "already exists"),
        (("export", study, "-o", tmp_path), "it is a folder"),
        (("report", study, "-o", afile), "not a folder"),
        (("report", study, "-o", tmp_path / "mine"), "other files than a study report"),
        (("export-for-reader", study, "-o", afile), "already exists"),
    ):
        code, _, err = _cli(capsys, "study", *argv)
        _one_line(code, err, fragment)
    assert afile.read_text(encoding="utf-8") == "keep me"
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["notes.txt"]


def test_report_is_complete_or_absent(tmp_path, capsys, tiny_disk):
    study = make_study(tmp_path, n=20)
    answers = write_csv(
        tmp_path / "a.csv", "reader,case_id,answer,seconds",
        [f"ann,{c},positive,{5 + i}" for i, c in enumerate(_case_ids(study))],
    )  # fmt: skip
    assert _cli(capsys, "study", "import", study, answers)[0] == 0
    disk = tiny_disk(128)
    fill_disk(disk, 16 * 1024)
    code, _, err = _cli(capsys, "study", "report", study, "-o", disk / "rep", "--bootstrap", 20)
    assert code == 2  # the disk fills while the files are written, after the statistics
    error_after_progress(err, str(disk / "rep"), "the disk is full", "nothing was written")
    assert [p.name for p in disk.iterdir()] == [".filler"] and not leftovers(disk)
    out = tmp_path / "rep"
    assert _cli(capsys, "study", "report", study, "-o", out, "--bootstrap", 20)[0] == 0
    (out / "stale.csv").write_text("from an older report", encoding="utf-8")
    assert _cli(capsys, "study", "report", study, "-o", out, "--bootstrap", 20)[0] == 0
    assert (out / "report.html").is_file() and not (out / "stale.csv").exists()
    umask = os.umask(0o022)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o777 & ~umask  # as a plain mkdir would make it
    assert not leftovers(tmp_path)


def _case_ids(study: Path) -> list[str]:
    with StudyStore(study, readonly=True) as store:
        return [c.case_id for c in store.cases()]


def test_report_refuses_impossible_times_stored_by_older_versions(tmp_path, capsys):
    study = make_study(tmp_path)
    with StudyStore(study) as store:  # what 'study import' let through before issue 13
        store.ensure_reader("ann")
        store.conn.execute(
            "INSERT INTO answers (reader, arm, case_id, revision, answer, seconds, source, "
            "answered_at) VALUES ('ann', 'unassisted', 'HER2POS_case00', 1, 'positive', "
            "9e999, 'import', '2026-01-01')"
        )
    code, _, err = _cli(capsys, "study", "report", study, "-o", tmp_path / "rep")
    _one_line(code, err, "'ann' to case 'HER2POS_case00'", "seconds inf")
    assert not (tmp_path / "rep").exists() and not leftovers(tmp_path)


def test_reading_window_stores_at_most_a_day_for_a_case_left_open(qtbot, tmp_path):
    from her2viewer.gui.study.window import ReadingWindow
    from her2viewer.gui.tiles import TileCache, TileLoader
    from her2viewer.study.definition import MAX_READING_SECONDS

    study = make_study(tmp_path, n=2)
    now = [100.0]
    loader = TileLoader(TileCache(16), workers=1)
    window = ReadingWindow(
        ReadingSession(study, "ann"), loader, confirm_leave=lambda w: False, clock=lambda: now[0]
    )
    qtbot.addWidget(window)
    window.show()
    now[0] += 2 * 86400  # the reader went home for the weekend
    window.give_answer("positive", advance=False)
    window.close()
    loader.shutdown()
    with StudyStore(study) as store:
        (answer,) = store.answers()
    assert answer.seconds == MAX_READING_SECONDS


def test_reading_an_immutable_study_says_so_and_keeps_the_file(tmp_path):
    study = make_study(tmp_path)
    ReadingSession(study, "ann").close()  # enrolled, order fixed
    before = study.read_bytes()
    with _immutable(study):
        with pytest.raises(StudyError, match="read-only; nothing was changed"):
            ReadingSession(study, "ann")  # every opening is logged in the file: refused at once
        with pytest.raises(StudyError, match="read-only; nothing was changed"):
            ReadingSession(study, "ben")
    assert study.read_bytes() == before


@pytest.mark.parametrize("text", ["{}", "[1, 2]", '{"study": 3, "readers": []}'])
def test_results_refuse_a_summary_not_written_by_report(tmp_path, text):
    pytest.importorskip("pyqtgraph")
    from her2viewer.gui.study.results import load_summary

    (tmp_path / "summary.json").write_text(text, encoding="utf-8")
    with pytest.raises(StudyError, match="not a summary written by 'study report'"):
        load_summary(tmp_path)


@pytest.mark.parametrize(
    "argv",
    [
        ("report", "s.h2study", "-o", "rep", "--bootstrap", "-5"),
        ("report", "s.h2study", "-o", "rep", "--bootstrap", "1000000000"),
        ("report", "s.h2study", "-o", "rep", "--seed", "-1"),
        ("create", "s.h2study", "--cases", "c.csv", "--question", "status", "--seed", "-1"),
        ("mcnemar-range", "--cases", "-1", "--correct-a", "0", "--correct-b", "0"),
    ],
)
def test_numeric_options_checked_at_parse_time(capsys, argv):
    with pytest.raises(SystemExit) as exit_info:
        main(["study", *argv])
    assert exit_info.value.code == 2
    assert "Traceback" not in capsys.readouterr().err
