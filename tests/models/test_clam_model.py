"""CLAM modules, losses and bundles."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from her2viewer.errors import ModelError
from her2viewer.models.bundle import load_bundle, save_bundle
from her2viewer.models.clam import (
    CLAM,
    ClamConfig,
    SmoothTop1SVM,
    load_clam,
    make_loss,
    predict,
    save_clam_bundle,
)


def test_smooth_top1_svm_against_hand_computation():
    x = torch.tensor([[1.0, 0.5], [0.2, 9.0], [3.0, -1.0]])
    y = torch.tensor([0, 0, 1])
    # sample 0 (smooth): tau*log(exp(0) + exp(0.5 + 1 - 1)) ; sample 1 gap 8.8 > log(1000):
    # hard hinge max(0, 9 + 1 - 0.2) ; sample 2 gap 4 < 6.9: smooth log(exp(3+1+1) + exp(0))
    expected = (math.log(1 + math.exp(0.5)) + (9.0 + 1.0 - 0.2) + math.log(math.exp(5.0) + 1.0)) / 3
    assert SmoothTop1SVM(2)(x, y).item() == pytest.approx(expected, rel=1e-6)


def test_unknown_loss_is_a_user_error():
    with pytest.raises(ModelError, match="Unknown loss"):
        make_loss("focal", 2)


@pytest.mark.parametrize("model_type", ["clam_sb", "clam_mb"])
@pytest.mark.parametrize("subtyping", [False, True])
def test_instance_loss_backpropagates(model_type, subtyping):
    torch.manual_seed(0)
    cfg = ClamConfig(
        model_type=model_type,
        n_classes=3,
        embed_dim=20,
        hidden_dim=16,
        attention_dim=8,
        k_sample=4,
        subtyping=subtyping,
    )
    model = CLAM(cfg, instance_loss="svm")
    h = torch.randn(30, 20)
    logits, prob, _, raw, res = model(h, label=torch.tensor([1]), instance_eval=True)
    assert logits.shape == (1, 3) and raw.shape == ((3 if model_type == "clam_mb" else 1), 30)
    n_inst = 8 + (2 * 4 if subtyping else 0)
    assert res["inst_preds"].shape == (n_inst,) and res["inst_labels"].shape == (n_inst,)
    res["instance_loss"].backward()
    assert model.instance_classifiers[1].weight.grad.abs().sum() > 0


def test_k_sample_larger_than_bag():
    cfg = ClamConfig(embed_dim=6, hidden_dim=8, attention_dim=4, k_sample=8)
    _, _, _, _, res = CLAM(cfg)(torch.randn(3, 6), label=torch.tensor([0]), instance_eval=True)
    assert res["inst_labels"].tolist() == [1, 1, 1, 0, 0, 0]


def test_sizes_small_and_big():
    assert ClamConfig.from_size("big").attention_dim == 384
    with pytest.raises(ModelError, match="Unknown CLAM size"):
        ClamConfig.from_size("huge")


@pytest.mark.parametrize("suffix", ["", ".zip"])
def test_clam_bundle_round_trip(tmp_path, suffix):
    torch.manual_seed(1)
    model = CLAM(
        ClamConfig(model_type="clam_mb", embed_dim=12, hidden_dim=8, attention_dim=4, gated=False)
    ).eval()
    meta = {"class_names": ["negative", "positive"], "encoder": {"name": "tiny"}}
    path = save_clam_bundle(tmp_path / f"bundle{suffix}", model, meta)
    loaded, got_meta = load_clam(path)
    assert got_meta["class_names"] == ["negative", "positive"]
    assert got_meta["config"]["gated"] is False
    feats = np.random.default_rng(0).normal(size=(9, 12)).astype(np.float32)
    a, b = predict(model, feats), predict(loaded, feats)
    np.testing.assert_array_equal(a.attention, b.attention)
    np.testing.assert_array_equal(a.probabilities, b.probabilities)


def test_standardized_model_round_trip(tmp_path):
    model = CLAM(ClamConfig(embed_dim=4, hidden_dim=8, attention_dim=4, standardize=True)).eval()
    model.feature_mean.copy_(torch.tensor([10.0, 0, 0, 0]))
    model.feature_std.copy_(torch.tensor([2.0, 1, 1, 1]))
    feats = np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32)
    shifted = feats.copy()
    shifted[:, 0] = feats[:, 0] * 2 + 10
    plain = CLAM(ClamConfig(embed_dim=4, hidden_dim=8, attention_dim=4)).eval()
    plain.load_state_dict(model.state_dict(), strict=False)
    np.testing.assert_allclose(
        predict(model, shifted).attention, predict(plain, feats).attention, atol=1e-5
    )
    loaded, _ = load_clam(save_clam_bundle(tmp_path / "z", model, {}))
    assert torch.equal(loaded.feature_std, model.feature_std)


def test_bundle_errors(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        load_bundle(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="not a model bundle"):
        load_bundle(tmp_path / "empty")
    with pytest.raises(ModelError, match="model_kind"):
        save_bundle(tmp_path / "b", {}, {})
    path = save_bundle(tmp_path / "future", {"model_kind": "clam"}, {})
    manifest = json.loads((path / "bundle.json").read_text())
    (path / "bundle.json").write_text(json.dumps({**manifest, "schema_version": 99}))
    with pytest.raises(ModelError, match="Update her2viewer"):
        load_bundle(path)
    other = save_bundle(tmp_path / "other", {"model_kind": "her2net"}, {"model": {}})
    with pytest.raises(ModelError, match="this needs a 'clam' bundle"):
        load_clam(other)


def test_bundle_with_wrong_weights(tmp_path):
    model = CLAM(ClamConfig(embed_dim=12, hidden_dim=8, attention_dim=4))
    path = save_clam_bundle(tmp_path / "b", model, {})
    manifest = json.loads((path / "bundle.json").read_text())
    manifest["config"]["embed_dim"] = 24
    (path / "bundle.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match="do not fit"):
        load_clam(path)


def test_shipped_demo_bundle_loads_and_says_synthetic():
    from pathlib import Path

    from her2viewer.features.encoders import encoder_for_bundle

    path = Path(__file__).resolve().parents[2] / "resources" / "models" / "clam_synthetic_demo"
    assert sum(f.stat().st_size for f in path.iterdir()) < 5 * 2**20
    model, meta = load_clam(path)
    assert "SYNTHETIC" in meta["note"] and meta["class_names"] == ["negative", "positive"]
    assert meta["provenance"]["heldout_auc"] > 0.9
    assert meta["encoder"]["provenance"] == {"weights": "random", "seed": 0}
    encoder = encoder_for_bundle(meta)
    assert encoder.dim == model.config.embed_dim == 1024
