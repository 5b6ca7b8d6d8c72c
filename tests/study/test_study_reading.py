"""Reading session: blinding, per-reader randomisation, resume, washout, reader isolation."""

from __future__ import annotations

import sqlite3
from dataclasses import asdict
from datetime import date

import pytest
from study_util import make_study

from her2viewer.errors import StudyError
from her2viewer.study.reading import ReadingSession, case_order
from her2viewer.study.store import StudyStore

LEAKS = ("HER2POS", "HER2NEG", "truth_", "he_truth", "ihc_truth", "0.8731", "0.1269")


def _visible_text(session: ReadingSession) -> str:
    return " ".join(str(asdict(session.case(i))) for i in range(session.total))


def test_unassisted_session_cannot_query_truth_or_model(tmp_path):
    path = make_study(tmp_path, n=8)
    with ReadingSession(path, "alice", "unassisted") as session:
        text = _visible_text(session)
        for leak in LEAKS:
            assert leak not in text
        assert all(session.case(i).model is None for i in range(session.total))
        conn = session._store.conn
        for sql in (
            "SELECT truth FROM truth",
            "SELECT * FROM model_predictions",
            "SELECT COUNT(*) FROM truth WHERE truth = 'positive'",
            "SELECT COUNT(*) FROM model_predictions WHERE probability > 0.5",
            "SELECT c.case_id FROM cases c JOIN truth t USING (case_id) WHERE t.truth = 'positive'",
        ):
            with pytest.raises(sqlite3.DatabaseError, match="prohibited|not authorized"):
                conn.execute(sql).fetchall()
        with pytest.raises(sqlite3.DatabaseError, match="prohibited|not authorized"):
            session._store.truth()
        with pytest.raises(sqlite3.DatabaseError, match="prohibited|not authorized"):
            session._store.predictions()


def test_assisted_session_shows_model_but_not_truth(tmp_path):
    path = make_study(tmp_path, n=4)
    with ReadingSession(path, "alice", "assisted") as session:
        hints = [session.case(i).model for i in range(session.total)]
        assert all(h is not None and h.probability in (0.8731, 0.1269) for h in hints)
        with pytest.raises(sqlite3.DatabaseError, match="prohibited|not authorized"):
            session._store.truth()
        text = _visible_text(session)
        for leak in ("HER2POS", "HER2NEG", "truth_", "he_truth"):
            assert leak not in text


def test_missing_slide_error_names_position_not_path(tmp_path):
    path = make_study(tmp_path, n=3)  # no slide files were written
    with ReadingSession(path, "alice") as session:
        assert not session.case(0).slide_available
        with pytest.raises(StudyError) as info:
            session.slide_paths(0)
    message = str(info.value)
    assert "case 1 is missing" in message
    assert all(leak not in message for leak in LEAKS) and "\n" not in message


def test_slide_paths_given_to_loader_when_present(tmp_path, cmu_svs):
    path = make_study(tmp_path, n=2, slide=cmu_svs)
    with ReadingSession(path, "alice") as session:
        he, ihc = session.slide_paths(0)
        assert he.is_file() and ihc.is_file() and session.case(0).slide_available


def test_order_reproducible_per_seed_and_different_per_reader(tmp_path):
    path = make_study(tmp_path, n=20)
    orders = {}
    for reader in ("alice", "bob", "carol"):
        with ReadingSession(path, reader) as session:
            orders[reader] = list(session._order)
    assert len({tuple(o) for o in orders.values()}) == 3
    assert all(sorted(o) == sorted(orders["alice"]) for o in orders.values())
    # same study seed -> same per-reader orders in a new study file
    again = make_study(tmp_path / "again", n=20)
    with ReadingSession(again, "bob") as session:
        assert session._order == orders["bob"]
    other = make_study(tmp_path / "other", n=20, seed=8)
    with ReadingSession(other, "bob") as session:
        assert session._order != orders["bob"]
    ids = [f"c{i}" for i in range(30)]
    assert case_order(ids, 5, 0) == case_order(ids, 5, 0) != case_order(ids, 5, 1)


def test_order_stable_on_resume_and_resume_position(tmp_path):
    path = make_study(tmp_path, n=6)
    with ReadingSession(path, "alice") as session:
        first = list(session._order)
        assert session.resume_position() == 0
        session.answer(0, "positive", seconds=2.0)
        session.answer(1, "negative", seconds=3.0)
        assert session.answered() == 2
    with ReadingSession(path, "alice") as session:
        assert session._order == first
        assert session.resume_position() == 2
        assert session.case(1).answer == "negative" and session.case(1).seconds == 3.0
        for i in range(2, 6):
            session.answer(i, "positive")
        assert session.resume_position() == 5


def test_reader_sees_only_own_answers(tmp_path):
    path = make_study(tmp_path, n=4)
    with ReadingSession(path, "alice") as alice:
        for i in range(4):
            alice.answer(i, "positive", comment="alice was here")
    with ReadingSession(path, "bob") as bob:
        assert bob.answered() == 0
        assert all(bob.case(i).answer is None for i in range(4))
        assert "alice" not in _visible_text(bob)
        bob.answer(0, "negative")
    with StudyStore(path) as store:
        by_reader = {(a.reader, a.answer) for a in store.answers()}
    assert ("alice", "positive") in by_reader and ("bob", "negative") in by_reader


def test_enrolment_washout_and_positions(tmp_path):
    path = make_study(tmp_path, n=3, readers=("alice",))
    with pytest.raises(StudyError, match="'mallory' is not enrolled"):
        ReadingSession(path, "mallory")
    with pytest.raises(StudyError, match="no arm 'sham'"):
        ReadingSession(path, "alice", "sham")
    with ReadingSession(path, "alice") as session, pytest.raises(StudyError, match="outside 1-3"):
        session.case(3)
    with StudyStore(path) as store:
        cases = store.cases()
    washed = tmp_path / "washout.h2study"
    StudyStore.create(
        washed, store.question, cases, arms=["unassisted", "assisted"],
        second_arm_opens="2030-01-15",
    ).close()  # fmt: skip
    with pytest.raises(StudyError, match="assisted arm opens on 2030-01-15"):
        ReadingSession(washed, "alice", "assisted", today=date(2030, 1, 14))
    ReadingSession(washed, "alice", "assisted", today=date(2030, 1, 15)).close()
