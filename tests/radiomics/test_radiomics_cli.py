"""``her2viewer radiomics extract|extract-batch|train|evaluate|predict``."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from her2viewer.cli import main
from her2viewer.radiomics.volume import Volume, write_nifti, write_nrrd

DATA = Path(__file__).resolve().parents[1] / "data" / "radiomics"


def test_extract_breast1_json(capsys):
    args = ["radiomics", "extract", str(DATA / "breast1_image.nrrd"),
            str(DATA / "breast1_label.nrrd"), "--shift", "2000", "--json"]  # fmt: skip
    assert main(args) == 0
    features = json.loads(capsys.readouterr().out)
    assert len(features) == 107
    assert features["original_firstorder_Mean"] == pytest.approx(131.12587412587413)
    assert features["original_glcm_Idmn"] == pytest.approx(0.9374959395714519, rel=1e-6)


def _cases(tmp_path: Path, n: int = 24) -> Path:
    """Small NRRD/NIfTI volumes: 'positive' ROIs are brighter and textured."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        positive = i % 2
        image = rng.normal(100 + 40 * positive, 10 + 20 * positive, (8, 16, 16)).astype(np.int16)
        mask = np.zeros(image.shape, np.uint8)
        mask[2:6, 4 : 10 + i % 3, 4:12] = 1
        ext = ".nrrd" if i % 3 else ".nii.gz"
        write = write_nrrd if ext == ".nrrd" else write_nifti
        write(tmp_path / f"img{i}{ext}", Volume(image, (2.0, 0.8, 0.8)))
        write(tmp_path / f"roi{i}{ext}", Volume(mask, (2.0, 0.8, 0.8)))
        rows.append([f"c{i}", f"img{i}{ext}", f"roi{i}{ext}", ["negative", "positive"][positive]])
    with (tmp_path / "cases.csv").open("w", newline="") as handle:
        csv.writer(handle).writerows([["case_id", "image", "mask", "label"], *rows])
    return tmp_path / "cases.csv"


def test_batch_train_evaluate_predict(tmp_path, capsys):
    cases = _cases(tmp_path)
    features = tmp_path / "features.csv"
    classes = "firstorder,glcm,ngtdm"
    assert main(["radiomics", "extract-batch", str(cases), "--out", str(features),
                 "--classes", classes, "--bin-width", "10"]) == 0  # fmt: skip
    assert "24 cases x 47 features" in capsys.readouterr().out
    model = tmp_path / "model.json"
    assert main(["radiomics", "train", str(features), "--out", str(model), "--folds", "3",
                 "--figures", str(tmp_path / "figs"), "--json"]) == 0  # fmt: skip
    report = json.loads(capsys.readouterr().out)
    assert report["models"]["logistic_regression"]["auc"] >= 0.8
    assert (tmp_path / "figs" / "roc.png").is_file()
    assert main(["radiomics", "evaluate", str(model), str(features), "--json"]) == 0
    assert set(json.loads(capsys.readouterr().out)) == {
        "logistic_regression",
        "random_forest",
        "mlp",
    }
    assert main(["radiomics", "predict", str(model), str(tmp_path / "img1.nrrd"),
                 str(tmp_path / "roi1.nrrd"), "--classes", classes, "--bin-width", "10",
                 "--json"]) == 0  # fmt: skip
    result = json.loads(capsys.readouterr().out)
    assert 0.0 <= result["p_positive"] <= 1.0


def test_user_errors_exit_2(tmp_path, capsys):
    write_nrrd(tmp_path / "img.nrrd", Volume(np.zeros((4, 5, 6), np.int16), (1.0, 1.0, 1.0)))
    write_nrrd(tmp_path / "roi.nrrd", Volume(np.zeros((4, 5, 7), np.uint8), (1.0, 1.0, 1.0)))
    assert (
        main(["radiomics", "extract", str(tmp_path / "img.nrrd"), str(tmp_path / "roi.nrrd")]) == 2
    )
    err = capsys.readouterr().err
    assert "does not match image shape" in err and err.count("\n") == 1
    assert main(["radiomics", "train", str(tmp_path / "none.csv"), "--out", "m.json"]) == 2
    assert "Features file not found" in capsys.readouterr().err
