"""``her2viewer patchcnn train|predict|gradcam`` end to end on the small synthetic cohort."""

from __future__ import annotations

import json

import numpy as np
import pytest

from her2viewer.analysis.patch_grading import gradcam_layer, gradcam_slide, grade_slide
from her2viewer.cli import main
from her2viewer.models.bundle import load_bundle


@pytest.fixture(scope="module")
def bundle(synthetic_cohort, tmp_path_factory):
    out = tmp_path_factory.mktemp("patchcnn") / "bundle.zip"
    args = [
        "patchcnn", "train", str(synthetic_cohort), "--out", str(out), "--scores", "0,1,2,3",
        "--arch", "resnet34", "--input-size", "32", "--epochs", "1", "--limit", "3",
        "--device", "cpu", "--json",
    ]  # fmt: skip
    assert main(args) == 0
    return out


def test_train_writes_bundle_with_held_out_metrics(bundle):
    meta = load_bundle(bundle).meta
    assert meta["model_kind"] == "patch_cnn" and meta["classes"] == ["0", "1+", "2+", "3+"]
    assert meta["aggregation"].startswith("mean patch probability")
    split = meta["provenance"]["split_patients"]
    assert all(split.values()) and len(set(sum(split.values(), []))) == 4
    test = meta["metrics"]["test"]["patch"]
    assert np.array(test["confusion"]).shape == (4, 4) and 0.0 <= test["accuracy"] <= 1.0


def test_predict_prints_slide_grade(bundle, synthetic_cohort, capsys, tmp_path):
    slide = synthetic_cohort.parent / "case000" / "ihc.svs"
    out = tmp_path / "patches.json"
    assert main(["grade", "predict", str(bundle), str(slide), "--limit", "2", "--out", str(out),
                 "--json"]) == 0  # fmt: skip
    summary = json.loads(capsys.readouterr().out)
    assert summary["grade"] in ("0", "1+", "2+", "3+") and summary["patches"] == 2
    saved = json.loads(out.read_text())
    assert saved["grade"] == summary["grade"] and np.array(saved["probs"]).shape == (2, 4)


def test_gradcam_writes_level0_map(bundle, synthetic_cohort, tmp_path):
    slide = synthetic_cohort.parent / "case003" / "ihc.svs"
    out = tmp_path / "cam.npy"
    args = ["patchcnn", "gradcam", str(bundle), str(slide), "--out", str(out), "--limit", "2",
            "--grade", "3+", "--downsample", "32"]  # fmt: skip
    assert main(args) == 0
    values = np.load(out)
    assert values.shape == (75, 94)  # 3000 x 2400 level-0 px at 32 px per map px
    scored = values[np.isfinite(values)]
    assert scored.size > 0 and scored.min() >= 0.0 and scored.max() <= 1.0


def test_user_errors_exit_2(bundle, synthetic_cohort, tmp_path, capsys):
    slide = synthetic_cohort.parent / "case000" / "ihc.svs"
    assert main(["patchcnn", "gradcam", str(bundle), str(slide), "--out", str(tmp_path / "c"),
                 "--grade", "4+"]) == 2  # fmt: skip
    assert "Grade '4+' is not one of" in capsys.readouterr().err
    assert main(["patchcnn", "predict", str(tmp_path / "none.pt"), str(slide)]) == 2
    assert "Model file not found" in capsys.readouterr().err


def test_analysis_results_become_viewer_layers(bundle, synthetic_cohort):
    slide = synthetic_cohort.parent / "case002" / "ihc.svs"
    grading = grade_slide(slide, bundle, limit=3, device="cpu")
    layer = grading.layer()
    assert layer.downsample == grading.patch_size_level0 and layer.vmax == 3.0
    x, y = grading.coords[0] + grading.patch_size_level0 // 2
    assert layer.value_at(x, y) is not None
    cam = gradcam_slide(slide, bundle, limit=2, downsample=64, device="cpu")
    heat = gradcam_layer(cam)
    assert heat.values.shape == cam.values.shape and heat.downsample == 64
