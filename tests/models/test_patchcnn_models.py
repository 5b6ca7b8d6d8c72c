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
    fit_linear_head,
    head_inputs,
    input_transform,
    keep_dab_macenko,
    keep_patches,
    load_patch_cnn,
    predict_proba,
    save_patch_cnn,
    seeded_backbone,
    slide_grade,
    to_tensor,
)
from her2viewer.models.patch_data import (
    CohortCase,
    grading_metrics,
    read_cohort,
    sklearn_macro_auc,
)
from her2viewer.stain import MacenkoNormalizer
from her2viewer.stats.splits import patient_split


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
    with pytest.raises(ModelError, match="'clam' bundle; this needs a 'patch_cnn' bundle"):
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
    parts = patient_split([c.score for c in cases], [c.patient_id for c in cases], seed=0)
    split = {name: [cases[i] for i in index] for name, index in parts.items()}
    sets = [{c.patient_id for c in v} for v in split.values()]
    assert all(sets) and not (sets[0] & sets[1] or sets[0] & sets[2] or sets[1] & sets[2])
    assert sum(len(v) for v in split.values()) == 20
    with pytest.raises(ModelError, match="3 or more patients"):
        patient_split([c.score for c in cases[:4]], [c.patient_id for c in cases[:4]])


def test_cohort_missing_column(tmp_path):
    (tmp_path / "labels.csv").write_text("case_id,ihc_path\nc0,a.svs\n")
    with pytest.raises(ModelError, match="'ihc_score' is missing"):
        read_cohort(tmp_path / "labels.csv")


def test_linear_head_folds_the_standardised_regression():
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(0)
    y = np.repeat([0, 1, 2], 20)
    features = (rng.normal(5.0, 3.0, (60, 512)) + 2.0 * y[:, None]).astype(np.float32)
    model = build_patch_cnn("resnet34", 4, seed=0)
    fit_linear_head(model, "resnet34", features, y, c=0.1)
    scaler = StandardScaler().fit(features)
    expected = LogisticRegression(C=0.1, max_iter=2000).fit(scaler.transform(features), y)
    with torch.no_grad():
        probs = torch.softmax(model.fc(torch.from_numpy(features)), 1).numpy()
    np.testing.assert_allclose(
        probs[:, :3], expected.predict_proba(scaler.transform(features)), atol=1e-4
    )
    assert probs[:, 3].max() < 1e-6  # a grade absent from training is never called
    fit_linear_head(model, "resnet34", features[:40], y[:40] % 2 * 3, c=0.1)  # two grades
    with torch.no_grad():
        called = model.fc(torch.from_numpy(features[:40])).argmax(1).numpy()
    assert set(called) <= {0, 3}
    with pytest.raises(ModelError, match="one grade only"):
        fit_linear_head(model, "resnet34", features[:5], np.zeros(5, int))


def test_head_inputs_are_what_the_head_sees():
    model = build_patch_cnn("alexnet", 3, seed=0)  # head nested in the classifier
    x = torch.randn(3, 3, 64, 64)
    features = head_inputs(model, "alexnet", x, batch_size=2)
    assert features.shape == (3, 4096)
    with torch.no_grad():
        np.testing.assert_allclose(
            model.classifier[6](torch.from_numpy(features)).numpy(), model(x).numpy(), atol=1e-4
        )


def test_seeded_backbone_bundle_stores_only_the_head(tmp_path):
    model, record = seeded_backbone("resnet34", 7, 4)
    torch.nn.init.normal_(model.fc.weight)
    meta = {"arch": "resnet34", "classes": ["0", "1+", "2+", "3+"], "backbone": record}
    path = save_patch_cnn(tmp_path / "b.zip", model, meta)
    assert path.stat().st_size < 50_000 and record["seed"] == 7
    loaded, _ = load_patch_cnn(path)
    x = torch.randn(2, 3, 64, 64)
    np.testing.assert_allclose(predict_proba(loaded, x), predict_proba(model, x), atol=1e-6)
    record["sha256"] = "0" * 64
    tampered = save_patch_cnn(tmp_path / "t.zip", model, meta)
    with pytest.raises(ModelError, match="regenerated from seed 7 differs") as info:
        load_patch_cnn(tampered)
    assert "\n" not in str(info.value)


def test_keep_dab_macenko_keeps_dab_intensity():
    from her2viewer.stain import HDAB, combine_stains, separate_stains

    tissue = immunohistochemistry()[:256, :256]
    stains = separate_stains(tissue, HDAB)
    strong = stains.copy()
    strong[..., 1] *= 2.0
    strong = combine_stains(strong, HDAB)
    reference = MacenkoNormalizer.fit(tissue)

    def dab_ratio(normalise):
        def dab(rgb):
            return np.maximum(separate_stains(normalise(rgb), HDAB)[..., 1], 0).mean()

        return dab(strong) / dab(tissue)

    assert dab_ratio(keep_dab_macenko(reference)) > 1.6  # the doubled DAB stays stronger
    assert dab_ratio(reference) < 1.3  # plain Macenko equalises the DAB range
