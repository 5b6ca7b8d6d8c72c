"""Study file: creation, append-only answers with revisions, import/export, bad inputs, CLI."""

from __future__ import annotations

import sqlite3

import pytest
from study_util import make_study, write_csv

from her2viewer.cli import main
from her2viewer.errors import StudyError
from her2viewer.study.definition import load_cases, make_question
from her2viewer.study.store import SCHEMA_VERSION, StudyStore


def test_create_and_answer_revisions(tmp_path):
    path = make_study(tmp_path, readers=("alice",))
    with StudyStore(path) as store:
        assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert store.meta("schema_version") == str(SCHEMA_VERSION)
        assert len(store.cases()) == 6 and len(store.truth()) == 6
        store.record_answer("alice", "unassisted", "HER2POS_case00", "pos", seconds=4.0)
        store.record_answer("alice", "unassisted", "HER2POS_case00", "Negative", seconds=9.5)
        current = store.answers()
        history = store.answers(current_only=False)
    assert [a.answer for a in history] == ["positive", "negative"]
    assert [a.revision for a in history] == [1, 2]
    assert len(current) == 1 and current[0].answer == "negative" and current[0].seconds == 9.5


def test_answers_are_append_only(tmp_path):
    path = make_study(tmp_path, readers=("alice",))
    with StudyStore(path) as store:
        store.record_answer("alice", "unassisted", "HER2POS_case00", "positive")
        for sql in ("UPDATE answers SET answer = 'negative'", "DELETE FROM answers"):
            with pytest.raises(sqlite3.DatabaseError, match="append-only"):
                store.conn.execute(sql)
        assert store.answers()[0].answer == "positive"


def test_record_answer_rejects_bad_values(tmp_path):
    path = make_study(tmp_path, readers=("alice",))
    with StudyStore(path) as store:
        with pytest.raises(StudyError, match="'maybe' is not one of negative, positive"):
            store.record_answer("alice", "unassisted", "HER2POS_case00", "maybe")
        with pytest.raises(StudyError, match="not enrolled"):
            store.record_answer("mallory", "unassisted", "HER2POS_case00", "positive")
        with pytest.raises(StudyError, match="no arm 'placebo'"):
            store.record_answer("alice", "placebo", "HER2POS_case00", "positive")
        with pytest.raises(StudyError, match="case 'nope' is not in this study"):
            store.record_answer("alice", "unassisted", "nope", "positive")
        with pytest.raises(StudyError, match="records no confidence"):
            store.record_answer("alice", "unassisted", "HER2POS_case00", "positive", 3)
        assert store.answers() == []


def test_export_import_round_trip(tmp_path):
    path = make_study(tmp_path / "a", readers=("alice",))
    with StudyStore(path) as store:
        store.record_answer("alice", "assisted", "HER2NEG_case01", "positive", seconds=3)
        store.record_answer("alice", "assisted", "HER2NEG_case01", "negative", seconds=5)
        assert store.export_csv(tmp_path / "answers.csv") == 2
    copy = make_study(tmp_path / "b")
    with StudyStore(copy) as store:
        assert store.import_csv(tmp_path / "answers.csv") == 2
        current = store.answers()
        assert [(a.reader, a.arm, a.answer, a.source) for a in current] == [
            ("alice", "assisted", "negative", "import")
        ]
        assert len(store.answers(current_only=False)) == 2


def test_import_is_all_or_nothing_with_line_numbers(tmp_path):
    path = make_study(tmp_path)
    bad = write_csv(
        tmp_path / "in.csv",
        "reader,case_id,answer,arm",
        ["bob,HER2POS_case00,positive,", "bob,HER2NEG_case01,2+,unassisted"],
    )
    with StudyStore(path) as store:
        with pytest.raises(StudyError, match=r"in.csv line 3: answer '2\+' is not one of"):
            store.import_csv(bad)
        assert store.answers() == [] and store.readers() == {}
    missing = write_csv(tmp_path / "m.csv", "reader,answer", ["bob,positive"])
    with StudyStore(path) as store, pytest.raises(StudyError, match="lacks the column"):
        store.import_csv(missing)


@pytest.mark.parametrize(
    ("header", "rows", "message"),
    [
        ("case_id,path", ["a,x.svs"], "cases.csv lacks the column\\(s\\) he_path"),
        ("case_id,he_path", ["a,x.svs", "a,y.svs"], "line 3: case_id 'a' repeats line 2"),
        ("case_id,he_path", [",x.svs"], "line 2: case_id is empty"),
        ("case_id,he_path", [], "has a header but no rows"),
    ],
)
def test_bad_cases_csv(tmp_path, header, rows, message):
    with pytest.raises(StudyError, match=message):
        load_cases(write_csv(tmp_path / "cases.csv", header, rows))


def test_question_errors():
    with pytest.raises(StudyError, match="question 'grade' is unknown"):
        make_question("grade")
    with pytest.raises(StudyError, match="at least two distinct"):
        make_question("custom", ["a"])
    with pytest.raises(StudyError, match="--positive 'c' is not one"):
        make_question("custom", ["a", "b"], positive="c")
    q = make_question("ihc_score", confidence="1-5")
    assert q.normalise(" 2 ") == "2+" and q.normalise("3+") == "3+"
    with pytest.raises(StudyError, match="outside the study's scale 1-5"):
        q.check_confidence(7)


def test_not_a_study_file_and_schema_mismatch(tmp_path):
    junk = tmp_path / "junk.h2study"
    junk.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StudyError, match="junk.h2study is not a study file"):
        StudyStore(junk)
    path = make_study(tmp_path)
    with StudyStore(path) as store:
        store.conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(StudyError, match=f"schema 99; this version reads {SCHEMA_VERSION}"):
        StudyStore(path)
    with pytest.raises(StudyError, match="no such study file"):
        StudyStore(tmp_path / "absent.h2study")


def test_create_refuses_existing_and_leaves_nothing_on_error(tmp_path):
    path = make_study(tmp_path)
    cases = load_cases(tmp_path / "cases.csv")
    with pytest.raises(StudyError, match="already exists"):
        StudyStore.create(path, make_question("status"), cases)
    other = tmp_path / "other.h2study"
    with pytest.raises(StudyError, match="arms must be distinct"):
        StudyStore.create(other, make_question("status"), cases, arms=["unassisted", "sham"])
    with pytest.raises(StudyError, match="not an ISO date"):
        StudyStore.create(
            other, make_question("status"), cases, arms=["unassisted", "assisted"],
            second_arm_opens="next week",
        )  # fmt: skip
    assert not other.exists() and not list(tmp_path.glob("*.partial"))


def _cli(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_create_import_export_status(tmp_path, capsys):
    make_study(tmp_path / "src")  # writes the CSVs
    src = tmp_path / "src"
    study = tmp_path / "cli.h2study"
    code, out, _ = _cli(
        capsys, "study", "create", str(study), "--cases", str(src / "cases.csv"),
        "--question", "status", "--truth", str(src / "truth.csv"), "--model-predictions",
        str(src / "preds.csv"), "--arms", "unassisted,assisted", "--seed", "3",
    )  # fmt: skip
    assert code == 0 and "6 cases" in out and "seed 3" in out
    assert "warning: 6 case(s) have no slide file" in out
    answers = write_csv(
        tmp_path / "ans.csv", "reader,case_id,answer,confidence,arm,seconds",
        ["ann,HER2POS_case00,positive,,assisted,12.5", "ann,HER2NEG_case01,neg,,,3"],
    )  # fmt: skip
    assert _cli(capsys, "study", "import", str(study), str(answers))[0] == 0
    code, out, _ = _cli(capsys, "study", "status", str(study))
    assert "ann/assisted: 1/6" in out and "ann/unassisted: 1/6" in out and "integrity: ok" in out
    code, out, _ = _cli(capsys, "study", "export", str(study), "-o", str(tmp_path / "e.csv"))
    assert code == 0 and "2 answer rows" in out


@pytest.mark.parametrize(
    ("csv_name", "header", "rows", "message"),
    [
        ("truth.csv", "case_id,label", ["x,positive"], "truth.csv lacks the column(s) truth"),
        ("truth.csv", "case_id,truth", ["HER2POS_case00,3+"], "answer '3+' is not one of"),
        ("truth.csv", "case_id,truth", ["ghost,positive"], "case_id 'ghost' is not in the study"),
        ("preds.csv", "case_id,prediction,probability", ["HER2POS_case00,positive,1.5"],
         "probability 1.5 is outside 0-1"),
    ],
)  # fmt: skip
def test_cli_bad_inputs_give_one_line_errors(tmp_path, capsys, csv_name, header, rows, message):
    make_study(tmp_path / "src")
    src = tmp_path / "src"
    write_csv(src / csv_name, header, rows)
    code, _, err = _cli(
        capsys, "study", "create", str(tmp_path / "x.h2study"), "--cases", str(src / "cases.csv"),
        "--question", "status", "--truth", str(src / "truth.csv"), "--model-predictions",
        str(src / "preds.csv"),
    )  # fmt: skip
    assert code == 2
    assert message in err and err.count("\n") == 1 and err.startswith("her2viewer: error:")
    assert not (tmp_path / "x.h2study").exists()


def test_cli_missing_files_and_mcnemar_range(tmp_path, capsys):
    code, _, err = _cli(capsys, "study", "status", str(tmp_path / "none.h2study"))
    assert code == 2 and "no such study file" in err and err.count("\n") == 1
    code, out, _ = _cli(
        capsys, "study", "mcnemar-range", "--cases", "21", "--correct-a", "18", "--correct-b", "9"
    )
    assert code == 0 and '"p_range"' in out
    code, _, err = _cli(
        capsys, "study", "mcnemar-range", "--cases", "21", "--correct-a", "22", "--correct-b", "9"
    )
    assert code == 2 and "between 0 and n" in err


def test_cli_read_and_results_user_errors(tmp_path, capsys):
    study = make_study(tmp_path, readers=("alice",))
    code, _, err = _cli(capsys, "study", "read", str(study), "--reader", "mallory")
    assert code == 2 and "'mallory' is not enrolled" in err and err.count("\n") == 1
    code, _, err = _cli(capsys, "study", "results", str(tmp_path / "no_report"))
    assert code == 2 and "not a readable study summary" in err and err.count("\n") == 1
