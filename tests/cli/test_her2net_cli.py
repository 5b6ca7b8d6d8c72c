"""``her2viewer her2net predict|train|evaluate``: JSON fields, overlays, one-line errors."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from her2viewer.cli import main
from her2viewer.models.bundle import save_bundle
from her2viewer.models.her2net.model import DEMO_BUNDLE
from her2viewer.overlay import MaskLayer

FIELDS = ("her2_status", "high_expression_percent", "tumor_area_px", "strong_area_px", "overlays")


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("her2viewer: error:") and "\n" not in err
    return err


def test_predict_json_with_the_demo_bundle(synthetic_case, tmp_path, capsys):
    slide = synthetic_case / "he.svs"
    code = main(["her2net", "predict", str(slide), "--json", "--out", str(tmp_path / "o")])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    for key in FIELDS:
        assert key in result
    assert result["her2_status"] in ("positive", "negative")
    assert 0.0 <= result["high_expression_percent"] <= 100.0
    assert result["strong_area_px"] <= result["tumor_area_px"]
    assert result["tumor_area_px"] > 0
    assert (result["her2_status"] == "positive") == (result["high_expression_percent"] >= 10.0)
    tumor = cv2.imread(result["overlays"]["tumor_mask"], cv2.IMREAD_GRAYSCALE) > 0
    truth = cv2.imread(str(synthetic_case / "tumor_mask.png"), cv2.IMREAD_GRAYSCALE) > 0
    assert tumor.shape == truth.shape  # 16 level-0 px per pixel, like the truth masks
    assert (tumor & truth).sum() / (tumor | truth).sum() > 0.6
    layer = MaskLayer.from_png("tumor", result["overlays"]["tumor_mask"], result["mask_downsample"])
    assert layer.labels.shape == tumor.shape


def test_predict_text_uses_cache(synthetic_case, capsys):
    slide = str(synthetic_case / "he.svs")
    assert main(["her2net", "predict", slide, "--model", str(DEMO_BUNDLE)]) == 0
    first = capsys.readouterr().out
    assert first.startswith("HER2 ") and "high-expression" in first
    assert main(["her2net", "predict", slide, "--model", str(DEMO_BUNDLE)]) == 0
    assert capsys.readouterr().out == first


def test_threshold_changes_status(synthetic_case, tmp_path, capsys):
    slide = str(synthetic_case / "he.svs")
    assert main(["her2net", "predict", slide, "--json", "--threshold", "100"]) == 0
    assert json.loads(capsys.readouterr().out)["her2_status"] == "negative"


def test_bad_inputs_are_one_line_errors(synthetic_case, tmp_path, capsys):
    slide = str(synthetic_case / "he.svs")
    assert main(["her2net", "predict", str(tmp_path / "none.svs")]) == 2
    assert "none.svs" in _error_line(capsys)
    assert main(["her2net", "predict", slide, "--model", str(tmp_path / "nobundle")]) == 2
    assert "not found" in _error_line(capsys)
    other = save_bundle(tmp_path / "clam", {"model_kind": "clam"}, {})
    assert main(["her2net", "predict", slide, "--model", str(other)]) == 2
    assert "this needs a 'her2net' bundle" in _error_line(capsys)
    png = tmp_path / "plain.png"
    cv2.imwrite(str(png), np.full((600, 600, 3), 128, np.uint8))
    assert main(["her2net", "predict", str(png)]) == 2
    assert "magnification" in _error_line(capsys)
    with pytest.raises(SystemExit) as refused:  # refused while the options are read
        main(["her2net", "predict", slide, "--threads", "0"])
    err = capsys.readouterr().err
    assert refused.value.code == 2 and "--threads" in err and err.count("\n") == 1
    out = tmp_path / "b"
    assert main(["her2net", "train", "--cohort", str(tmp_path / "x.csv"), "-o", str(out)]) == 2
    assert "Labels file not found" in _error_line(capsys)
    assert not out.exists() and not (tmp_path / "b.work").exists()
    assert main(["her2net", "evaluate", "--cohort", str(tmp_path / "x.csv")]) == 2
    assert "Labels file not found" in _error_line(capsys)


def test_train_rejects_cohort_too_small_for_five_folds(synthetic_cohort, tmp_path, capsys):
    code = main(["her2net", "train", "--cohort", str(synthetic_cohort), "-o", str(tmp_path / "b")])
    assert code == 2
    assert "5-fold cross-validation needs 5" in _error_line(capsys)
    assert not (tmp_path / "b").exists() and not (tmp_path / "b.work").exists()


@pytest.mark.parametrize("verb", ["train", "predict", "evaluate"])
def test_help_lists_the_verbs(verb, capsys):
    with pytest.raises(SystemExit):
        main(["her2net", verb, "--help"])
    assert "--device" in capsys.readouterr().out
