"""``her2viewer grade train|predict|gradcam`` end to end on small synthetic cohorts."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from her2viewer.analysis.contract import analyse_path
from her2viewer.analysis.grade import GradeOptions, analyse_grade, gradcam_layer, gradcam_slide
from her2viewer.cli import main
from her2viewer.models import patch_cnn
from her2viewer.models.bundle import load_bundle
from her2viewer.models.clam import DEMO_CLAM_BUNDLE
from her2viewer.overlay.layers import MaskLayer


@pytest.fixture(scope="module")
def twelve_cases(synthetic_cohort, ihc_cohort, tmp_path_factory):
    """Both shared cohorts in one labels.csv: 12 patients, 3 per IHC score, two texture seeds."""
    out = tmp_path_factory.mktemp("twelve") / "labels.csv"
    with out.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["case_id", "ihc_path", "ihc_score", "patient_id"])
        for tag, labels in (("a", synthetic_cohort), ("b", ihc_cohort)):
            for row in csv.DictReader(labels.open()):
                path = (labels.parent / row["ihc_path"]).resolve()
                writer.writerow(
                    [tag + row["case_id"], path, row["ihc_score"], tag + row["patient_id"]]
                )
    return out


@pytest.fixture(scope="module")
def bundle(twelve_cases, tmp_path_factory):
    out = tmp_path_factory.mktemp("grading") / "bundle.zip"
    args = [
        "grade", "train", str(twelve_cases), "--out", str(out), "--scores", "0,1,2,3",
        "--input-size", "128", "--step", "256", "--limit", "12", "--device", "cpu", "--json",
    ]  # fmt: skip
    assert main(args) == 0
    return out


def test_linear_head_training_beats_chance_on_held_out_patients(bundle):
    meta = load_bundle(bundle).meta
    assert meta["model_kind"] == "patch_cnn" and meta["classes"] == ["0", "1+", "2+", "3+"]
    assert meta["aggregation"].startswith("mean patch probability")
    assert meta["backbone"]["weights"] == "random" and bundle.stat().st_size < 50_000
    split = meta["provenance"]["split_patients"]
    assert all(len(v) == 4 for v in split.values()) and len(set(sum(split.values(), []))) == 12
    test = meta["metrics"]["test"]
    assert set(test["slides"]) == {p[0] + "case" + p[2:] for p in split["test"]}
    assert np.array(test["patch"]["confusion"]).shape == (4, 4)
    assert test["patch"]["macro_auc"] > 0.7  # chance is 0.5 (0.79 here)


def test_full_recipe_trains_the_whole_network(synthetic_cohort, tmp_path):
    out = tmp_path / "full.zip"
    args = ["grade", "train", str(synthetic_cohort), "--out", str(out), "--recipe", "full",
            "--scores", "0,1,2,3", "--input-size", "32", "--epochs", "1", "--limit", "2",
            "--tumor", "none", "--device", "cpu"]  # fmt: skip
    assert main(args) == 0
    saved = load_bundle(out)
    assert "backbone" not in saved.meta and len(saved.meta["train_losses"]) == 1
    assert "fc.weight" in saved.state_dict("model")


def test_predict_uses_the_demo_bundle_by_default(synthetic_cohort, capsys):
    slide = synthetic_cohort.parent / "case003" / "ihc.svs"
    assert main(["grade", "predict", str(slide), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["grade"] in ("0", "1+", "2+", "3+") and summary["patches"] >= 1
    assert summary["patch_choice"] == "tumor mask"
    assert sum(summary["patch_grades"].values()) == summary["patches"]


def test_predict_writes_patch_grades(bundle, synthetic_cohort, capsys, tmp_path):
    slide = synthetic_cohort.parent / "case000" / "ihc.svs"
    out = tmp_path / "patches.json"
    assert main(["grade", "predict", str(slide), "--model", str(bundle), "--tumor", "none",
                 "--limit", "2", "--out", str(out), "--json"]) == 0  # fmt: skip
    summary = json.loads(capsys.readouterr().out)
    saved = json.loads(out.read_text())
    assert saved["grade"] == summary["grade"] and np.array(saved["probs"]).shape == (2, 4)
    assert saved["aggregation"] == "mean patch probability, argmax"


def test_gradcam_of_a_region_writes_level0_map(bundle, synthetic_cohort, tmp_path):
    slide = synthetic_cohort.parent / "case003" / "ihc.svs"
    out = tmp_path / "cam.npy"
    args = ["patchcnn", "gradcam", str(slide), "--model", str(bundle), "--out", str(out),
            "--grade", "3+", "--downsample", "32", "--tumor", "none",
            "--rect", "1000,800,2000,1600"]  # fmt: skip
    assert main(args) == 0
    values = np.load(out)
    assert values.shape == (75, 94)  # 3000 x 2400 level-0 px at 32 px per map px
    scored = np.argwhere(np.isfinite(values))
    assert scored.size > 0 and np.nanmin(values) >= 0.0 and np.nanmax(values) <= 1.0
    rows, cols = scored[:, 0] * 32, scored[:, 1] * 32  # every patch overlaps the region
    assert cols.max() >= 1000 - 32 and cols.min() < 2000 and rows.min() < 1600


def test_user_errors_exit_2(bundle, synthetic_cohort, tmp_path, capsys, monkeypatch):
    slide = synthetic_cohort.parent / "case000" / "ihc.svs"
    cases = [
        (["--model", str(bundle), "--grade", "4+"], "Grade '4+' is not one of"),
        (["--model", str(DEMO_CLAM_BUNDLE)], "'clam' bundle; this needs a 'patch_cnn' bundle"),
        (["--model", str(tmp_path / "none.pt")], "Model file not found"),
    ]
    for extra, message in cases:
        args = ["grade", "gradcam", str(slide), "--out", str(tmp_path / "c.npy"), *extra]
        assert main(args) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1
    with pytest.raises(SystemExit) as refused:  # a bad --rect is refused as options are read
        main(["grade", "gradcam", str(slide), "--out", str(tmp_path / "c.npy"), "--rect", "1,2,3"])
    err = capsys.readouterr().err
    assert refused.value.code == 2 and "--rect" in err and err.count("\n") == 1
    monkeypatch.setattr(patch_cnn, "DEMO_GRADING_BUNDLE", tmp_path / "gone")
    assert main(["grade", "predict", str(slide)]) == 2
    assert "patch-grading demo bundle is missing" in capsys.readouterr().err


def test_analysis_results_become_viewer_layers(bundle, synthetic_cohort):
    slide = synthetic_cohort.parent / "case002" / "ihc.svs"
    options = GradeOptions(limit=3, device="cpu", tumor="none")
    grading = analyse_path(analyse_grade, slide, bundle, options, None)
    (layer,) = grading.layers()
    assert grading.step_level0 == grading.patch_size_level0 // 2  # half-overlapping grid
    assert isinstance(layer, MaskLayer) and layer.downsample == grading.step_level0 / 2
    x, y = grading.coords[0] + grading.patch_size_level0 // 2
    grade = grading.classes[grading.probs[0].argmax()]
    assert layer.value_at(x, y) == f"IHC {grade} (patch grade)"
    cam = gradcam_slide(slide, bundle, limit=2, downsample=64, device="cpu", tumor="none")
    heat = gradcam_layer(cam)
    assert heat.values.shape == cam.values.shape and heat.downsample == 64
