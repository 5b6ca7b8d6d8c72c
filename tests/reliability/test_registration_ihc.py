"""Issue 13, registration and IHC scoring: the whole registration matrix is checked
(item 17), ``register`` fails with status 2 and writes all or nothing (items 14, 20),
a slide with nothing to score is "not evaluable", never negative (item 4), and NaN in
IHC scoring is an error, not a class (item 2)."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import skimage
import tifffile

from her2viewer.analysis.ihc import score_ihc
from her2viewer.analysis.ihc_baseline import StainIntensityBaseline
from her2viewer.cli import main
from her2viewer.errors import RegistrationError, StainError
from her2viewer.registration import Registration
from her2viewer.slide import open_slide
from her2viewer.stain import HDAB
from tests.reliability.conftest import fill_disk, last_line_error, leftovers, one_line_error

IDENTITY = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]


def _registration_file(folder, matrix_text: str):
    path = folder / "reg.json"
    path.write_text(f'{{"matrix": {matrix_text}, "method": "probe", "error_px": 1.0}}')
    return path


def _image(folder, name: str, image: np.ndarray):
    path = folder / name
    if name.endswith(".tif"):
        tifffile.imwrite(path, image)
    else:
        cv2.imwrite(str(path), image[..., ::-1])
    return path


# -- item 17: the whole matrix ---------------------------------------------------------
@pytest.mark.parametrize(
    ("matrix", "fragment"),
    [
        ("[[1, 0, 0], [0, 1, 0], [0, 0, 0]]", "bottom row"),
        ("[[1, 0, 0], [0, 1, 0], [0.001, 0, 1]]", "bottom row"),
        ("[[1e300, 0, 0], [0, 1e300, 0], [0, 0, 1]]", "scales"),
        ("[[1e-9, 0, 0], [0, 1, 0], [0, 0, 1]]", "scales"),
        ("[[1, 0, 1e12], [0, 1, 0], [0, 0, 1]]", "translation"),
        ("[[NaN, 0, 0], [0, 1, 0], [0, 0, 1]]", "NaN"),
    ],
)
def test_registration_json_checks_the_whole_matrix(tmp_path, matrix, fragment):
    path = _registration_file(tmp_path, matrix)
    with pytest.raises(RegistrationError) as info:
        Registration.load(path)
    message = str(info.value)
    assert "reg.json" in message and fragment in message and "\n" not in message


def test_view_refuses_a_flat_transform_in_one_sentence(tmp_path, capsys):
    slide = _image(tmp_path, "he.png", np.full((300, 400, 3), 230, np.uint8))
    bad = _registration_file(tmp_path, "[[1, 0, 0], [0, 1, 0], [0, 0, 0]]")
    out = tmp_path / "shot.png"
    args = ["view", str(slide), str(slide), "--transform", str(bad), "--screenshot", str(out)]
    assert main(args) == 2
    one_line_error(capsys, "reg.json", "bottom row")
    assert not out.exists()


# -- items 14 and 20: register ---------------------------------------------------------
def test_register_failure_exits_2_and_writes_nothing(tmp_path, capsys):
    blank = _image(tmp_path, "blank.png", np.full((300, 400, 3), 255, np.uint8))
    out = tmp_path / "reg.json"
    assert main(["register", str(blank), str(blank), "-o", str(out)]) == 2
    last_line_error(capsys, "registration failed", "blank.png")  # after the tissue steps
    assert not out.exists() and leftovers(tmp_path) == []


def test_register_checks_its_output_before_working(tmp_path, capsys):
    missing = tmp_path / "missing.svs"  # never opened: the output is refused first
    assert main(["register", str(missing), str(missing), "-o", str(tmp_path)]) == 2
    one_line_error(capsys, str(tmp_path), "folder")
    blocker = tmp_path / "notes.txt"
    blocker.write_text("a file")
    assert main(["register", str(missing), str(missing), "-o", str(blocker / "r.json")]) == 2
    one_line_error(capsys, "notes.txt")


def test_register_on_a_full_disk_leaves_nothing(synthetic_case, tiny_disk, capsys):
    disk = tiny_disk(128)
    fill_disk(disk, leave_bytes=256)
    out = disk / "reg.json"
    he, ihc = synthetic_case / "he.svs", synthetic_case / "ihc.svs"
    assert main(["register", str(he), str(ihc), "-o", str(out)]) == 2
    last_line_error(capsys, "reg.json", "disk is full")  # after the registration's progress
    assert not out.exists() and leftovers(disk) == []


# -- item 4: nothing to score is "not evaluable" ---------------------------------------
def _flat_tissue_without_tumor() -> np.ndarray:
    image = np.full((1200, 1600, 3), 255, np.uint8)
    image[200:1000, 200:1400] = (225, 190, 215)  # pale pink tissue, no nuclei
    return image


@pytest.mark.parametrize(
    ("name", "image", "why"),
    [
        ("blank.png", np.full((800, 1000, 3), 255, np.uint8), "no tissue"),
        ("dot.png", np.zeros((1, 1, 3), np.uint8), "no tissue"),
        ("flat.tif", _flat_tissue_without_tumor(), "no tumor-cell regions"),
    ],
)
def test_ihc_score_with_nothing_to_score_is_not_evaluable(tmp_path, capsys, name, image, why):
    path = _image(tmp_path, name, image)
    assert main(["ihc", "score", str(path), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["status"] == "not_evaluable" and result["score"] is None
    assert why in result["reason"] and name in result["reason"]
    assert main(["ihc", "score", str(path)]) == 0
    text = capsys.readouterr().out
    assert "not evaluable" in text and why in text and "negative" not in text


def test_ihc_score_of_stained_tumor_is_still_scored(tmp_path):
    path = _image(tmp_path, "ihc.png", skimage.data.immunohistochemistry())
    with open_slide(path) as slide:
        result = score_ihc(slide)
    assert result.evaluable and result.score in (0, 1, 2, 3) and result.reason == ""


def test_baseline_and_mil_with_nothing_to_score_are_not_evaluable(tmp_path, capsys):
    from her2viewer.analysis.ihc_mil import IhcAttentionMIL, resnet34_encoder, save_mil

    blank = _image(tmp_path, "blank.png", np.full((600, 800, 3), 255, np.uint8))
    model = StainIntensityBaseline.fit(
        [0.01, 0.02, 0.1, 0.2], [0, 1, 2, 3], ["negative"] * 2 + ["positive"] * 2
    )
    model_path = model.save(tmp_path / "baseline.json")
    bundle = save_mil(tmp_path / "mil", IhcAttentionMIL(), resnet34_encoder(random_seed=0), {})
    for verb, source in (("predict-baseline", model_path), ("predict-mil", bundle)):
        assert main(["ihc", verb, str(source), str(blank)]) == 0
        result = json.loads(capsys.readouterr().out)
        assert result["status"] == "not_evaluable", verb
        assert result["her2_status"] is None and "blank.png" in result["reason"]


# -- item 2: non-finite values are an error --------------------------------------------
def test_a_nan_stain_matrix_is_an_error_not_a_score(tmp_path):
    path = _image(tmp_path, "ihc.png", skimage.data.immunohistochemistry())
    matrix = np.array(HDAB, float)
    matrix[0, 0] = np.nan
    with open_slide(path) as slide, pytest.raises(StainError, match="ihc.png.*NaN"):
        score_ihc(slide, matrix=matrix)


@pytest.mark.parametrize("field", ["coef", "intercept", "mean", "scale"])
def test_a_baseline_model_with_nan_is_refused(tmp_path, capsys, field):
    model = StainIntensityBaseline.fit([0.01, 0.2], [0, 3], ["negative", "positive"])
    data = json.loads(model.save(tmp_path / "baseline.json").read_text())
    if field in ("mean", "scale"):
        data["standardise"][field] = float("nan")
    else:
        data["status"][field] = [[float("nan")]] if field == "coef" else [float("inf")]
    path = tmp_path / "baseline.json"
    path.write_text(json.dumps(data))
    image = _image(tmp_path, "ihc.png", skimage.data.immunohistochemistry())
    assert main(["ihc", "predict-baseline", str(path), str(image)]) == 2
    one_line_error(capsys, "baseline.json", "NaN")


# -- the IHC training verbs refuse bad labels and outputs in one sentence --------------
@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("ihc_path,ihc_score,her2_status\na.png,three,positive\n", "line 2"),
        ("ihc_path,ihc_score,her2_status\na.png,2,maybe\n", "'maybe'"),
        (b"ihc_path,ihc_score\n\xff\xfe", "labels"),
    ],
)
def test_ihc_training_labels_are_checked_in_one_sentence(tmp_path, capsys, content, fragment):
    labels = tmp_path / "labels.csv"
    if isinstance(content, bytes):
        labels.write_bytes(content)
    else:
        labels.write_text(content)
    assert main(["ihc", "train-baseline", str(labels), "-o", str(tmp_path / "m.json")]) == 2
    one_line_error(capsys, "labels.csv", fragment)


def test_ihc_train_mil_features_folder_that_is_a_file_is_one_sentence(tmp_path, capsys):
    labels = tmp_path / "labels.csv"
    labels.write_text("ihc_path,ihc_score,her2_status\na.png,2,positive\n")
    blocker = tmp_path / "features"
    blocker.write_text("a file")
    args = ["ihc", "train-mil", str(labels), "-o", str(tmp_path / "mil")]
    assert main([*args, "--features-dir", str(blocker), "--random-weights", "0"]) == 2
    one_line_error(capsys, "features", "it is a file")
