"""Reader marks, HER2 score and membrane percentage, idle time, registration, exports."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from shapely.geometry import LineString, Point, Polygon
from study_util import make_study

from her2viewer.cli import main
from her2viewer.errors import StudyError
from her2viewer.geometry.geojson import read_features
from her2viewer.study.definition import ReadingRules, load_cases
from her2viewer.study.exports import LONG_COLUMNS, long_rows
from her2viewer.study.marks import ReaderMark
from her2viewer.study.reading import ActiveClock, ReadingSession
from her2viewer.study.registration import register_cases
from her2viewer.study.store import CaseRegistration, StudyStore

#: A registration that shifts the IHC by (100, -50) level-0 px onto the H&E.
SHIFT = np.array([[1.0, 0, 100], [0, 1, -50], [0, 0, 1]])


def _study(tmp_path, rules=None, registrations=True, confidence="none"):
    """make_study's cases, re-created with reading rules and a registration for every case."""
    base = make_study(tmp_path / "base", confidence=confidence)
    with StudyStore(base) as store:
        cases, truth, preds = store.cases(), store.truth(), store.predictions()
        question = store.question
    regs = {c.case_id: CaseRegistration(SHIFT, "test", 1.5) for c in cases} if registrations else {}
    path = tmp_path / "marks.h2study"
    StudyStore.create(
        path, question, cases, truth, preds, ("unassisted", "assisted"), (), 7,
        rules=rules, registrations=regs,
    ).close()  # fmt: skip
    return path


def test_active_clock_excludes_pauses_and_idle_over_the_limit():
    clock = ActiveClock(idle_limit=30)
    clock.start(0)
    clock.activity(10)  # 10 s of work
    clock.activity(100)  # 90 s idle: counts 30
    assert clock.seconds(100) == 40
    clock.stop(105)
    assert clock.seconds(500) == 45 and not clock.running  # paused
    clock.start(500)
    assert clock.seconds(600) == 75  # still idle since 500: capped at 30
    unlimited = ActiveClock()
    unlimited.start(0)
    unlimited.activity(1000)
    assert unlimited.seconds(1000) == 1000


def test_marks_score_and_membrane_stored_with_the_answer_for_the_reader_only(tmp_path):
    rules = ReadingRules(ask_her2_score=True, ask_membrane_percent=True)
    path = _study(tmp_path, rules)
    outline = Polygon([(10, 10), (400, 20), (380, 300), (15, 280)])
    with ReadingSession(path, "alice") as alice:
        with pytest.raises(StudyError, match="asks for a HER2 score"):
            alice.answer(0, "positive", membrane_percent=40)
        with pytest.raises(StudyError, match="percentage of complete membrane staining"):
            alice.answer(0, "positive", her2_score="3+")
        with pytest.raises(StudyError, match="120% is not a percentage 0-100"):
            alice.answer(0, "positive", her2_score="3+", membrane_percent=120)
        with pytest.raises(StudyError, match="HER2 score '4\\+' is not one of 0, 1\\+"):
            alice.answer(0, "positive", her2_score="4+", membrane_percent=12)
        alice.answer(0, "positive", her2_score="3", membrane_percent=85,
                     mark=ReaderMark("he", outline))  # fmt: skip
        alice.answer(1, "negative", her2_score="1+", membrane_percent=5,
                     mark=ReaderMark("ihc", Point(55.5, 66.5)))  # fmt: skip
        first = alice.case(0)
        assert (first.her2_score, first.membrane_percent) == ("3+", 85.0)
        assert first.mark.slide == "he" and first.mark.geometry.equals(outline)
        assert alice.case(1).mark.geometry.equals(Point(55.5, 66.5))
        assert np.allclose(alice.registration(0), SHIFT)
    with ReadingSession(path, "bob") as bob:  # shown to nobody else
        assert all(bob.case(i).mark is None and bob.case(i).her2_score is None for i in range(6))
    with StudyStore(path) as store:
        assert store.rules == rules


@pytest.mark.parametrize(
    ("mark", "message"),
    [
        (ReaderMark("he", LineString([(0, 0), (5, 5)])), "not a LineString"),
        (ReaderMark("he", Polygon([(0, 0), (10, 10), (10, 0), (0, 10)])), "crosses itself"),
        (ReaderMark("he", Point(float("nan"), 3)), "non-finite"),
        (ReaderMark("pet", Point(1, 2)), "not 'pet'"),
    ],
)
def test_bad_marks_are_one_sentence(tmp_path, mark, message):
    path = _study(tmp_path, registrations=False)
    with ReadingSession(path, "alice") as session, pytest.raises(StudyError, match=message):
        session.answer(0, "positive", mark=mark)
    with StudyStore(path) as store:
        assert store.answers() == []


def test_marks_export_as_geojson_in_he_pixels(tmp_path, capsys):
    path = _study(tmp_path)
    square = Polygon([(0, 0), (200, 0), (200, 200), (0, 200)])
    with ReadingSession(path, "alice") as session:
        order = [session._order[i] for i in range(2)]
        session.answer(0, "positive", mark=ReaderMark("he", square))
        session.answer(1, "negative", mark=ReaderMark("ihc", Point(10, 10)))
        session.answer(2, "negative")
    out = tmp_path / "marks.geojson"
    assert main(["study", "export", str(path), "-o", str(out), "--format", "marks"]) == 0
    assert "wrote 2 marks" in capsys.readouterr().out
    features = {f.properties["case_id"]: f for f in read_features(out)}
    assert set(features) == set(order)
    he, ihc = features[order[0]], features[order[1]]
    assert he.geometry.equals(square) and he.class_name == "positive"
    assert ihc.properties["drawn_on"] == "ihc" and ihc.properties["slide"] == "he"
    assert ihc.geometry.equals(Point(110, -40))  # mapped through the stored registration
    assert he.properties["reader"] == "alice" and he.properties["arm"] == "unassisted"


def test_long_csv_rows_and_file(tmp_path, capsys):
    path = _study(tmp_path, registrations=False, confidence="0-100")
    with ReadingSession(path, "alice") as a, ReadingSession(path, "bob", "assisted") as b:
        a.answer(0, "positive", confidence=80, seconds=12)
        b.answer(0, "negative", confidence=30, mark=ReaderMark("he", Point(1, 1)))
    with StudyStore(path) as store:
        rows = list(long_rows(store))
        truth = store.truth()
    assert [set(r) for r in rows] == [set(LONG_COLUMNS)] * 2
    by_reader = {r["reader"]: r for r in rows}
    alice = by_reader["alice"]
    assert alice["modality"] == "unassisted" and alice["rating"] == pytest.approx(0.8)
    assert alice["truth"] == int(truth[alice["case"]] == "positive")
    assert by_reader["bob"]["has_mark"] == 1 and by_reader["bob"]["modality"] == "assisted"
    out = tmp_path / "long.csv"
    assert main(["study", "export", str(path), "-o", str(out), "--format", "long"]) == 0
    with out.open(newline="", encoding="utf-8") as handle:
        table = list(csv.DictReader(handle))
    assert list(table[0]) == list(LONG_COLUMNS) and len(table) == 2
    assert {r["rating"] for r in table} == {"0.8", "0.3"}


def test_registration_computed_once_at_creation(tmp_path, synthetic_case, capsys):
    cases = tmp_path / "cases.csv"
    cases.write_text(
        f"case_id,he_path,ihc_path\nc0,{synthetic_case / 'he.svs'},{synthetic_case / 'ihc.svs'}\n"
        f"lonely,{synthetic_case / 'he.svs'},\n",
        encoding="utf-8",
    )
    found, failures = register_cases(load_cases(cases))
    assert set(found) == {"c0"} and failures == {}
    truth = np.array(json.loads((synthetic_case / "truth.json").read_text())["transform_ihc_to_he"])
    corners = np.array([[500.0, 500.0, 1.0], [2500.0, 1900.0, 1.0]]).T
    assert np.abs(found["c0"].matrix @ corners - truth @ corners).max() < 40
    study = tmp_path / "reg.h2study"
    argv = ["study", "create", str(study), "--cases", str(cases), "--question", "status"]
    assert main(argv) == 0
    with ReadingSession(study, "ann") as session:
        matrices = {session.case(i).has_ihc: session.registration(i) for i in range(2)}
    assert matrices[False] is None
    assert np.allclose(matrices[True], found["c0"].matrix)
