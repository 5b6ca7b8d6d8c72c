"""The atomic writer and the CSV escaping every output goes through."""

from __future__ import annotations

import csv
import os

import pytest

from her2viewer.errors import OutputError
from her2viewer.outputs import atomic_output, prepare_output_dir, write_text_atomic
from her2viewer.tables import write_csv
from tests.reliability.conftest import fill_disk, leftovers


def test_full_disk_leaves_the_old_file_and_no_temporary(tiny_disk):
    disk = tiny_disk(64)
    target = disk / "result.json"
    target.write_text("old")
    fill_disk(disk)
    with pytest.raises(OutputError, match="disk is full"):
        write_text_atomic(target, "x" * 200_000)
    assert target.read_text() == "old"
    assert leftovers(disk) == []


def test_failed_block_keeps_destination(tmp_path):
    target = tmp_path / "a.txt"
    target.write_text("kept")
    with pytest.raises(RuntimeError), atomic_output(target) as tmp:
        tmp.write_text("new")
        raise RuntimeError("writer crashed")
    assert target.read_text() == "kept"
    assert os.listdir(tmp_path) == ["a.txt"]


def test_folder_in_place_of_file_and_missing_folder(tmp_path):
    with pytest.raises(OutputError, match="it is a folder"):
        write_text_atomic(tmp_path, "x")
    with pytest.raises(OutputError, match="does not exist"):
        write_text_atomic(tmp_path / "missing" / "x.txt", "x")


def test_output_dir_that_is_a_file_or_read_only(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(OutputError, match="it is a file"):
        prepare_output_dir(blocker)
    with pytest.raises(OutputError):
        prepare_output_dir(blocker / "sub")
    assert prepare_output_dir(tmp_path / "new" / "deep").is_dir()


def test_csv_cells_are_escaped_against_formula_injection(tmp_path):
    hostile = ['=HYPERLINK("http://x")', "+1", "-cmd", "@SUM(A1)", "\tx", "\rx", "ok"]
    path = write_csv(tmp_path / "t.csv", ["value", "n"], [[cell, -1.5] for cell in hostile])
    with path.open(newline="") as handle:
        rows = list(csv.reader(handle))[1:]
    assert [row[0] for row in rows] == ["'" + cell for cell in hostile[:-1]] + ["ok"]
    assert {row[1] for row in rows} == {"-1.5"}


def test_outputs_get_the_usual_file_mode(tmp_path):
    umask = os.umask(0o022)
    try:
        new = write_text_atomic(tmp_path / "new.json", "{}")
        kept = tmp_path / "kept.json"
        kept.write_text("")
        kept.chmod(0o640)
        write_text_atomic(kept, "{}")
    finally:
        os.umask(umask)
    assert new.stat().st_mode & 0o777 == 0o644
    assert kept.stat().st_mode & 0o777 == 0o640


def test_binary_or_unreadable_csv_is_one_sentence(tmp_path):
    from her2viewer.errors import Her2ViewerError
    from her2viewer.tables import read_csv_rows

    binary = tmp_path / "labels.csv"
    binary.write_bytes(b"\xff\xfe\x00garbage\x80\x81")
    with pytest.raises(Her2ViewerError, match="not a UTF-8 text CSV"):
        read_csv_rows(binary, ["case_id"], what="Labels file")
    folder = tmp_path / "dir.csv"
    folder.mkdir()
    with pytest.raises(Her2ViewerError, match="not found"):
        read_csv_rows(folder, ["case_id"], what="Labels file")
