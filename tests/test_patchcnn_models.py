"""Patch-grading CNNs: backbones, patch filter, weights loading, slide rule, macro-AUC."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from skimage.data import immunohistochemistry

from her2viewer.errors import ModelError
from her2viewer.models.bundle import save_bundle
from her2viewer.models.patch_cnn import (
    ARCHITECTURES,
    augment,
    background_fraction,
    build_patch_cnn,
    input_transform,
    keep_patches,
    load_patch_cnn,
    predict_proba,
    save_patch_cnn,
    slide_grade,
    to_tensor,
)
from her2viewer.models.patch_data import (
    CohortCase,
    grading_metrics,
    patient_split,
    read_cohort,
    sklearn_macro_auc,
)
from her2viewer.stain import MacenkoNormalizer


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_each_backbone_runs_forward_on_cpu(arch):
    model = build_patch_cnn(arch, n_classes=3, seed=0)
    with torch.no_grad():
        logits = model(torch.randn(2, 3, 96, 96))
    assert logits.shape == (2, 3) and torch.isfinite(logits).all()


def test_seed_makes_weights_reproducible():
    a = build_patch_cnn("resnet34", 4, seed=3).fc.weight
    b = build_patch_cnn("resnet34", 4, seed=3).fc.weight
    assert a.shape == (4, 512) and torch.equal(a, b)


def test_unknown_architecture():
    with pytest.raises(ModelError, match="Unknown architecture 'resnet9000'") as info:
        build_patch_cnn("resnet9000")
    assert "\n" not in str(info.value)


def test_background_filter_on_real_ihc():
    tissue = immunohistochemistry()[:512, :512]
    white = np.full((512, 512, 3), 245, np.uint8)
    half = white.copy()
    half[:, :180] = tissue[:, :180]  # 65% white
    assert background_fraction(white) == 1.0
    assert background_fraction(tissue) < 0.6
    assert keep_patches(np.stack([tissue, white, half])).tolist() == [True, False, False]


def test_input_transform_macenko_and_resize():
    tissue = immunohistochemistry()[:256, :256]
    meta = {"normalizer": MacenkoNormalizer.fit(tissue).to_dict(), "input_size": 64}
    x = input_transform(meta)(np.stack([tissue, tissue]))
    assert x.shape == (2, 3, 64, 64) and torch.isfinite(x).all()
    assert to_tensor(tissue[None]).shape == (1, 3, 256, 256)


def test_augment_keeps_shape_and_changes_pixels():
    x = torch.rand(4, 3, 32, 32)
    y = augment(x, torch.Generator().manual_seed(0))
    assert y.shape == x.shape and not torch.equal(x, y)


def test_slide_grade_is_mean_probability_argmax():
    probs = np.array([[0.6, 0.3, 0.1], [0.0, 0.45, 0.55], [0.1, 0.5, 0.4]])
    grade, mean = slide_grade(probs)
    assert grade == 1 and np.allclose(mean, [0.7 / 3, 1.25 / 3, 1.05 / 3])
    with pytest.raises(ModelError, match="No tissue patch"):
        slide_grade(np.zeros((0, 3)))


@pytest.fixture(scope="module")
def small_model():
    return build_patch_cnn("densenet121", 3, seed=1)


def test_bundle_round_trip(tmp_path, small_model):
    x = torch.randn(2, 3, 64, 64)
    path = save_patch_cnn(
        tmp_path / "b.zip", small_model, {"arch": "densenet121", "classes": ["1+", "2+", "3+"]}
    )
    model, meta = load_patch_cnn(path)
    assert meta["arch"] == "densenet121" and meta["model_kind"] == "patch_cnn"
    np.testing.assert_allclose(predict_proba(model, x), predict_proba(small_model, x), atol=1e-6)


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_plain_weights_files(tmp_path, small_model, suffix):
    path = tmp_path / f"w{suffix}"
    state = {k: v.contiguous() for k, v in small_model.state_dict().items()}
    if suffix == ".pt":
        torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, path)
    else:
        save_file(state, str(path))
    model, _ = load_patch_cnn(path, arch="densenet121")
    assert torch.equal(model.classifier.weight, small_model.classifier.weight)


def test_wrong_checkpoint_is_one_line_error(tmp_path, small_model):
    path = tmp_path / "w.pt"
    torch.save(small_model.state_dict(), path)
    with pytest.raises(ModelError, match="does not fit this architecture") as info:
        load_patch_cnn(path, arch="resnet34")
    assert "\n" not in str(info.value)


def test_bad_weight_files(tmp_path):
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="Cannot read weights from junk.pt"):
        load_patch_cnn(tmp_path / "junk.pt", arch="resnet34")
    with pytest.raises(ModelError, match="give its architecture"):
        load_patch_cnn(tmp_path / "junk.pt")
    with pytest.raises(ModelError, match="not found"):
        load_patch_cnn(tmp_path / "missing.pt", arch="resnet34")
    other = save_bundle(tmp_path / "clam", {"model_kind": "clam"}, {"model": {"w": torch.zeros(1)}})
    with pytest.raises(ModelError, match="'clam' bundle, not a patch CNN"):
        load_patch_cnn(other)


def test_macro_auc_matches_sklearn():
    rng = np.random.default_rng(0)
    truth = np.repeat([0, 1, 2], 30)
    logits = rng.normal(size=(90, 3)) + 1.5 * np.eye(3)[truth]
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    result = grading_metrics(truth, probs, ["1+", "2+", "3+"])
    assert result.macro_auc == pytest.approx(sklearn_macro_auc(truth, probs), abs=1e-12)
    assert set(result.per_class_auc) == {"1+", "2+", "3+"}
    for value in result.per_class_auc.values():
        assert value["ci_low"] <= value["auc"] <= value["ci_high"]
    cm = np.array(result.confusion)
    assert cm.sum() == 90 and result.accuracy == pytest.approx(np.trace(cm) / 90)
    assert result.adjacent_confusions == cm[0, 1] + cm[1, 0] + cm[1, 2] + cm[2, 1]


def test_metrics_shape_mismatch():
    with pytest.raises(ModelError, match="do not match"):
        grading_metrics([0, 1], np.ones((2, 4)), ["1+", "2+", "3+"])


def test_patient_split_keeps_patients_apart(tmp_path):
    cases = [CohortCase(f"c{i}", tmp_path, i % 4, f"P{i // 2}") for i in range(20)]
    split = patient_split(cases, seed=0)
    sets = [{c.patient_id for c in v} for v in split.values()]
    assert all(sets) and not (sets[0] & sets[1] or sets[0] & sets[2] or sets[1] & sets[2])
    assert sum(len(v) for v in split.values()) == 20
    with pytest.raises(ModelError, match="3 or more patients"):
        patient_split(cases[:4])


def test_cohort_missing_column(tmp_path):
    (tmp_path / "labels.csv").write_text("case_id,ihc_path\nc0,a.svs\n")
    with pytest.raises(ModelError, match="'ihc_score' is missing"):
        read_cohort(tmp_path / "labels.csv")
