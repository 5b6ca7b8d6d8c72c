"""Projects (issue 20): the database, cases from CSVs and folders, relink, export and gc."""

from __future__ import annotations

import csv
import json
import secrets
import shutil
import sqlite3

import pyarrow.parquet as pq
import pytest

from her2viewer.cli.main import main
from her2viewer.errors import OutputError
from her2viewer.project.cohort import add_slides, import_csv, relink
from her2viewer.project.results import collect_garbage, export_results, status
from her2viewer.project.run import run_project
from her2viewer.project.store import (
    MIGRATIONS,
    SCHEMA_VERSION,
    Case,
    Project,
    ProjectError,
    ResultRow,
)
from tests.reliability import conftest as reliability
from tests.reliability.conftest import fill_disk, one_line_error

tiny_disk = reliability.tiny_disk  # the fixture: a real small file system


@pytest.fixture()
def project(tmp_path, synthetic_cohort):
    """A project holding the 4-case synthetic cohort."""
    project = Project.create(tmp_path / "proj")
    import_csv(project, synthetic_cohort)
    return project


def test_create_makes_a_wal_database_at_the_schema_version(tmp_path):
    project = Project.create(tmp_path / "new")
    with sqlite3.connect(project.db_path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    with pytest.raises(ProjectError, match="already holds a project"):
        Project.create(tmp_path / "new")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x.txt").write_text("x")
    with pytest.raises(ProjectError, match="not an empty folder"):
        Project.create(tmp_path / "full")
    with pytest.raises(ProjectError, match="is not a project"):
        Project.open(tmp_path / "full")


def test_an_old_schema_is_migrated_and_a_newer_one_refused(tmp_path):
    folder = tmp_path / "old"
    folder.mkdir()
    with sqlite3.connect(folder / "project.sqlite") as db:
        db.executescript(MIGRATIONS[0] + "PRAGMA user_version = 1;")
        db.execute("INSERT INTO cases (case_id) VALUES ('c1')")
    project = Project.open(folder)
    project.set_registration("c1", [[1, 0, 5], [0, 1, 0], [0, 0, 1]])
    assert project.cases()[0].registration[0] == [1, 0, 5]
    with sqlite3.connect(folder / "project.sqlite") as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(ProjectError, match="newer than this her2viewer"):
        Project.open(folder)


def test_import_keeps_slides_fingerprints_patients_and_metadata(project, synthetic_cohort):
    cases = project.cases()
    assert [c.case_id for c in cases] == ["case000", "case001", "case002", "case003"]
    first = cases[0]
    assert first.he == str(synthetic_cohort.parent / "case000" / "he.svs")
    assert first.ihc.endswith("ihc.svs") and len(first.ihc_fingerprint) == 16
    assert first.he_fingerprint != first.ihc_fingerprint
    assert first.patient_id == "P000"
    assert set(first.metadata) == {"ihc_score", "her2_status"}
    import_csv(project, synthetic_cohort)  # again: updated, not duplicated
    assert len(project.cases()) == 4


def test_a_folder_is_paired_into_cases_by_the_pairing_rules(tmp_path, synthetic_cohort):
    project = Project.create(tmp_path / "proj")
    cases = add_slides(project, [synthetic_cohort.parent])
    assert sorted(c.case_id for c in cases) == ["case000", "case001", "case002", "case003"]
    assert all(c.he.endswith("he.svs") and c.ihc.endswith("ihc.svs") for c in cases)
    with pytest.raises(ProjectError, match="already in the project"):
        add_slides(project, [synthetic_cohort.parent / "case000" / "he.svs"])
    with pytest.raises(ProjectError, match="no such slide or folder"):
        add_slides(project, [tmp_path / "nowhere"])


def test_moved_slides_are_found_again_by_fingerprint(tmp_path, synthetic_cohort):
    source = tmp_path / "slides"
    shutil.copytree(synthetic_cohort.parent / "case001", source / "case001")
    project = Project.create(tmp_path / "proj")
    add_slides(project, [source])
    moved = tmp_path / "elsewhere" / "renamed"
    moved.parent.mkdir()
    (source / "case001").rename(moved)
    (moved / "he.svs").rename(moved / "first.svs")
    assert len(status(project)["slides_missing"]) == 2
    found = relink(project, tmp_path / "elsewhere")
    assert sorted(found.values()) == [str(moved / "first.svs"), str(moved / "ihc.svs")]
    assert status(project)["slides_missing"] == []
    assert project.cases()[0].he == str(moved / "first.svs")


def _done(project, case_id, analysis, summary, artefacts=()):
    row = ResultRow(case_id, analysis, "k" + analysis, "done", "1", summary=summary)
    row.artefacts = list(artefacts)
    project.record(row)


def test_export_has_one_row_per_case_and_one_column_per_figure(project, tmp_path):
    _done(project, "case000", "ihc", {"score": 3, "dab": {"mean": 0.5}, "stain": [1, 2]})
    _done(project, "case001", "clam", {"probabilities": {"positive": 0.25}, "label": "=cmd"})
    header, rows = [], []
    with export_results(project, tmp_path / "r.csv").open(newline="") as handle:
        header, *rows = list(csv.reader(handle))
    assert len(rows) == 4
    assert {"ihc.score", "ihc.dab.mean", "clam.probabilities.positive", "ihc_score"} < set(header)
    assert "ihc.stain" not in header  # lists are no figures
    by_case = {row[0]: dict(zip(header, row, strict=True)) for row in rows}
    assert by_case["case000"]["ihc.score"] == "3" and by_case["case001"]["ihc.score"] == ""
    assert by_case["case001"]["clam.label"].startswith("'")  # formula-escaped
    table = pq.read_table(export_results(project, tmp_path / "r.parquet")).to_pydict()
    assert table["case_id"] == ["case000", "case001", "case002", "case003"]
    assert table["clam.probabilities.positive"] == [None, 0.25, None, None]
    with pytest.raises(ProjectError, match=r"\.csv or \.parquet"):
        export_results(project, tmp_path / "r.xlsx")


def test_gc_removes_only_what_no_result_refers_to(project):
    kept = project.folder / "artefacts" / "case000" / "ihc-1.npz"
    folder = project.folder / "artefacts" / "case000" / "her2net-1"
    stale = project.folder / "artefacts" / "case000" / "ihc-0.npz"
    for path in (kept, folder / "her2net.json", stale, project.folder / "features" / "x.h5"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"12345")
    _done(project, "case000", "ihc", {}, [str(kept)])
    _done(project, "case000", "her2net", {}, [str(folder)])
    removed, freed = collect_garbage(project)
    assert sorted(p.name for p in removed) == ["ihc-0.npz", "x.h5"]
    assert freed == 10 and kept.exists() and (folder / "her2net.json").exists()


def test_the_verbs_create_import_status_export(tmp_path, synthetic_cohort, capsys):
    folder = str(tmp_path / "proj")
    assert main(["project", "create", folder]) == 0
    assert main(["project", "import", folder, str(synthetic_cohort)]) == 0
    capsys.readouterr()
    assert main(["project", "status", folder, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["cases"] == 4 and report["slides"] == 8
    assert report["analyses"]["ihc"] == {"done": 0, "failed": 0, "errors": {}}
    assert main(["project", "export", folder, "-o", str(tmp_path / "r.csv")]) == 0
    assert main(["project", "run", folder, "--analyses", "ihc,typo"]) == 2
    one_line_error(capsys, "Unknown analysis 'typo' in --analyses")
    assert main(["project", "status", str(tmp_path)]) == 2
    one_line_error(capsys, "is not a project")


def test_a_case_id_must_be_a_plain_name(tmp_path):
    project = Project.create(tmp_path / "proj")
    with pytest.raises(ProjectError, match="is not a case id"):
        project.add_case(Case("../x", he="a.svs", he_fingerprint="f"))


def test_one_run_or_gc_at_a_time(project):
    with project.exclusive():
        with pytest.raises(ProjectError, match="is busy: another 'project run'"):
            collect_garbage(project)
        with pytest.raises(ProjectError, match="is busy"):
            run_project(project, ["segment"], engine="local")
    assert project.results() == []  # the refused run did nothing
    assert collect_garbage(project) == ([], 0)


def test_an_export_to_a_full_disk_is_one_sentence_and_leaves_nothing(project, tiny_disk):
    _done(project, "case000", "ihc", {"score": 3, "note": secrets.token_hex(20000)})
    disk = tiny_disk(64)
    fill_disk(disk, leave_bytes=8192)
    for name in ("r.parquet", "r.csv"):
        with pytest.raises(OutputError, match=name):
            export_results(project, disk / name)
    assert sorted(p.name for p in disk.iterdir()) == [".filler"]
