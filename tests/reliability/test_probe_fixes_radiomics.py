"""Probe fixes for ``her2viewer radiomics`` (issue 13): one line, exit 2, nothing left behind."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from her2viewer.cli import main
from her2viewer.errors import RadiomicsError
from her2viewer.radiomics.features import discretize
from her2viewer.radiomics.model import (
    load_models,
    predict_saved,
    read_feature_table,
    train_models,
)
from her2viewer.radiomics.params import read_params
from tests.reliability.conftest import fill_disk, leftovers, one_line_error

DATA = Path(__file__).resolve().parents[1] / "data" / "radiomics"
IMAGE, MASK = str(DATA / "breast1_image.nrrd"), str(DATA / "breast1_label.nrrd")


def _refused(capsys, argv: list[str], *fragments: str) -> str:
    """Run ``argv`` in-process and check it is refused in one line with exit 2."""
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse refuses at parse time
        code = exc.code
    assert code == 2
    return one_line_error(capsys, *fragments)


@pytest.mark.parametrize("action", ["extract", "extract-batch", "predict"])
@pytest.mark.parametrize(
    ("option", "value"),
    [("--bin-width", "nan"), ("--bin-width", "inf"), ("--bin-width", "0"), ("--shift", "nan"),
     ("--shift", "inf"), ("--label", "0")],
)  # fmt: skip
def test_settings_options_checked_at_parse_time(capsys, tmp_path, action, option, value):
    inputs = {
        "extract": [IMAGE, MASK],
        "extract-batch": [str(tmp_path / "cases.csv"), "--out", str(tmp_path / "f.csv")],
        "predict": [str(tmp_path / "model.json"), IMAGE, MASK],
    }[action]
    _refused(capsys, ["radiomics", action, *inputs, option, value], option)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("option", "value"),
    [("--test-size", "0"), ("--test-size", "1"), ("--test-size", "nan"), ("--folds", "1"),
     ("--folds", "-1"), ("--seed", "-1"), ("--variance", "nan"), ("--variance", "inf"),
     ("--variance", "0"), ("--variance", "1.5")],
)  # fmt: skip
def test_train_options_checked_at_parse_time(capsys, tmp_path, radiomics_model, option, value):
    features = str(radiomics_model.parent / "features.csv")
    out = tmp_path / "m.json"
    _refused(capsys, ["radiomics", "train", features, "--out", str(out), option, value], option)
    assert not out.exists()


def _train(features: Path, out: Path, *extra: str) -> list[str]:
    return ["radiomics", "train", str(features), "--out", str(out), "--folds", "3", *extra]


def test_train_full_disk(capsys, tiny_disk, radiomics_model):
    disk = tiny_disk(64)
    fill_disk(disk)
    _refused(capsys, _train(radiomics_model.parent / "features.csv", disk / "m.json"), "full")
    assert not (disk / "m.json").exists()
    assert not leftovers(disk)


@pytest.mark.parametrize("place", ["read-only", "under a file", "a folder"])
def test_train_bad_output_place(capsys, tmp_path, tiny_disk, radiomics_model, place):
    features = radiomics_model.parent / "features.csv"
    if place == "read-only":
        disk = tiny_disk(64)
        os.system(f"mount -o remount,ro {disk}")
        out, fragment = disk / "m.json", "read-only"
    elif place == "under a file":
        (tmp_path / "file").write_text("x")
        out, fragment = tmp_path / "file" / "m.json", "file"
    else:
        (tmp_path / "m.json").mkdir()
        out, fragment = tmp_path / "m.json", "folder"
    _refused(capsys, _train(features, out), out.parent.name, fragment)
    assert not leftovers(tmp_path)


def test_train_figures_folder_checked_before_training(capsys, tmp_path, radiomics_model):
    (tmp_path / "figs").write_text("a file")
    out = tmp_path / "m.json"
    argv = _train(radiomics_model.parent / "features.csv", out, "--figures", str(tmp_path / "figs"))
    _refused(capsys, argv, "figs")
    assert not out.exists()


def test_tiny_bin_width_is_refused_not_a_memory_blowup():
    with pytest.raises(RadiomicsError, match="bin width"):
        discretize(np.array([0.0, 1000.0]), 1e-9)


@pytest.mark.parametrize(
    ("setting", "value"), [("binWidth", "nan"), ("binWidth", "-5"), ("binWidth", "'x'"),
                           ("label", "0"), ("label", "1.5"), ("voxelArrayShift", ".inf")]
)  # fmt: skip
def test_params_file_settings_checked(tmp_path, setting, value):
    params = tmp_path / "params.yaml"
    params.write_text(f"setting:\n  {setting}: {value}\n")
    with pytest.raises(RadiomicsError, match=setting):
        read_params(params)


def test_nan_weights_are_an_error_not_a_class(capsys, tmp_path, radiomics_model):
    payload = json.loads(radiomics_model.read_text())
    payload["models"]["logistic_regression"]["classifier"]["coef"][0] = float("nan")
    model = tmp_path / "nan.json"
    model.write_text(json.dumps(payload))
    _refused(capsys, ["radiomics", "predict", str(model), IMAGE, MASK], "nan.json", "non-finite")


def test_nan_feature_is_an_error_not_a_class(radiomics_model):
    payload = load_models(radiomics_model)
    features = dict.fromkeys(payload["features"], 1.0) | {payload["features"][1]: float("nan")}
    with pytest.raises(RadiomicsError, match=payload["features"][1]):
        predict_saved(payload, features, "logistic_regression")


def test_train_on_few_cases_prints_no_sklearn_warning(tmp_path, recwarn):
    rng = np.random.default_rng(0)
    table = tmp_path / "features.csv"
    rows = [["case_id", "label", *(f"f{k}" for k in range(20))]]
    rows += [[f"c{i}", i % 2, *(40 * (i % 2) + rng.normal(0, 15, 20))] for i in range(12)]
    table.write_text("\n".join(",".join(map(str, row)) for row in rows))
    train_models(read_feature_table(table), folds=2)
    assert not [w for w in recwarn if "duplicate" in str(w.message)]
