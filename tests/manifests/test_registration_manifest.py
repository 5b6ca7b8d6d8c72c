"""A registration JSON is checked by a pydantic model: one sentence names the file and field."""

from __future__ import annotations

import json

import numpy as np
import pytest

from her2viewer.cli import main
from her2viewer.errors import RegistrationError
from her2viewer.registration.transform import Registration

IDENTITY = [[1, 0, 0], [0, 1, 0], [0, 0, 1]]


def _load_error(tmp_path, data) -> str:
    path = tmp_path / "reg.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    with pytest.raises(RegistrationError) as info:
        Registration.load(path)
    message = str(info.value)
    assert str(path) in message and "\n" not in message
    return message


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"matrix": IDENTITY, "error_px": -1.0}, "'error_px'"),
        ({"matrix": IDENTITY, "error_px": "far"}, "'error_px'"),
        ({"matrix": IDENTITY, "quality": 3}, "'quality'"),
        ({"matrix": IDENTITY, "method": ["a"]}, "'method'"),
        ({"matrix": IDENTITY, "fixed": {"a": 1}}, "'fixed'"),
        ({"matrix": [[1, 0, 0], [0, 1, 0]]}, "'matrix'"),
        ({"matrix": [[1, 0], [0, 1], [0, 0]]}, "'matrix'"),  # the sentence says 3x3
    ],
)
def test_a_wrong_field_is_named(tmp_path, data, field):
    assert f"field {field} is invalid" in _load_error(tmp_path, data)


def test_a_missing_matrix_or_a_non_object_is_one_sentence(tmp_path):
    assert "lacks the field 'matrix'" in _load_error(tmp_path, {"method": "x"})
    assert "must hold a JSON object" in _load_error(tmp_path, "[1, 2]")


def test_the_matrix_rules_name_the_field(tmp_path):
    message = _load_error(tmp_path, {"matrix": [[1, 0, 0], [0, 1, 0], [0, 0, 0]]})
    assert "field 'matrix'" in message and "bottom row" in message


def test_view_refuses_a_negative_error_in_one_line(tmp_path, capsys):
    import cv2

    slide = tmp_path / "he.png"
    cv2.imwrite(str(slide), np.full((64, 64, 3), 230, np.uint8))
    bad = tmp_path / "reg.json"
    bad.write_text(json.dumps({"matrix": IDENTITY, "error_px": -3}))
    out = tmp_path / "shot.png"
    args = ["view", str(slide), str(slide), "--transform", str(bad), "--screenshot", str(out)]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "reg.json" in err and "'error_px'" in err
    assert not out.exists()
