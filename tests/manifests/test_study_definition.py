"""A study file's question is checked by a pydantic model: one sentence names the field."""

from __future__ import annotations

import json
import sqlite3

import pytest

from her2viewer.cli import main
from her2viewer.errors import StudyError
from her2viewer.study.definition import CaseRow, Question, make_question
from her2viewer.study.store import StudyStore

STATUS = make_question("status").to_dict()


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"kind": "grade"}, "'kind'"),
        ({"labels": ["negative"]}, "'labels'"),
        ({"labels": ["negative", "positive", "positive"]}, "'labels'"),
        ({"labels": ["neg", "pos"], "positive": ["pos"]}, "'labels'"),
        ({"positive": ["negative"]}, "'positive'"),
        ({"ordinal": True}, "'ordinal'"),
        ({"ordinal": "no"}, "'ordinal'"),
        ({"confidence": "1-10"}, "'confidence'"),
        ({"labels": [1, 2]}, "'labels.0'"),
    ],
)
def test_a_wrong_field_is_named(change, field):
    with pytest.raises(StudyError) as info:
        Question.from_dict({**STATUS, **change}, "s.h2study")
    message = str(info.value)
    assert message.startswith("s.h2study: ") and f"field {field} is invalid" in message
    assert "\n" not in message


def test_custom_positive_must_be_a_label():
    custom = make_question("custom", ["a", "b"], "b").to_dict()
    assert Question.from_dict(custom) == make_question("custom", ["a", "b"], "b")
    with pytest.raises(StudyError, match="field 'positive'"):
        Question.from_dict({**custom, "positive": ["c"]})


def test_a_missing_field_or_a_non_object_is_one_sentence():
    data = {key: value for key, value in STATUS.items() if key != "ordinal"}
    with pytest.raises(StudyError, match="lacks the field 'ordinal'"):
        Question.from_dict(data, "s.h2study")
    with pytest.raises(StudyError, match="s.h2study: the study definition is invalid"):
        Question.from_dict([STATUS], "s.h2study")


def test_a_tampered_study_file_is_refused_naming_file_and_field(tmp_path, capsys):
    path = tmp_path / "s.h2study"
    StudyStore.create(path, make_question("ihc_score"), [CaseRow("c1", "", "")]).close()
    question = {**make_question("ihc_score").to_dict(), "positive": ["1+", "9+"]}
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE meta SET value = ? WHERE key = 'question'", (json.dumps(question),))
    conn.close()
    assert main(["study", "status", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "s.h2study" in err and "field 'positive'" in err
