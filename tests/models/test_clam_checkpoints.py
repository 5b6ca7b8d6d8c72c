"""Reference CLAM checkpoints in every historical key layout load and reproduce outputs."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from her2viewer.errors import ModelError
from her2viewer.models.clam import load_clam, load_clam_checkpoint, predict

# Layouts of the reference code (mahmoodlab/CLAM models/model_clam.py over its history):
# where the attention block sits in attention_net, where the ungated final Linear sits,
# and which DataParallel prefix was saved.
LAYOUTS = {
    "current": dict(block=3, ungated_last=3, prefix="", dp_attention=False),
    "legacy_no_dropout": dict(block=2, ungated_last=2, prefix="", dp_attention=False),
    "current_dropout0_ungated": dict(block=3, ungated_last=2, prefix="", dp_attention=False),
    "dataparallel_model": dict(block=3, ungated_last=3, prefix="module.", dp_attention=False),
    "dataparallel_attention": dict(block=3, ungated_last=3, prefix="", dp_attention=True),
}


def reference_state_dict(layout, *, embed, hidden, attn, n_classes, gated, multi, labels, seed):
    """Build a state dict with the reference key names and random tensors."""
    gen = torch.Generator().manual_seed(seed)

    def rnd(*shape):
        return torch.randn(*shape, generator=gen) * 0.2

    spec = LAYOUTS[layout]
    net = "attention_net.module." if spec["dp_attention"] else "attention_net."
    block = f"{net}{spec['block']}."
    k = n_classes if multi else 1
    state = {f"{net}0.weight": rnd(hidden, embed), f"{net}0.bias": rnd(hidden)}
    if gated:
        for branch in ("attention_a", "attention_b"):
            state[f"{block}{branch}.0.weight"] = rnd(attn, hidden)
            state[f"{block}{branch}.0.bias"] = rnd(attn)
        state[f"{block}attention_c.weight"] = rnd(k, attn)
        state[f"{block}attention_c.bias"] = rnd(k)
    else:
        state[f"{block}module.0.weight"] = rnd(attn, hidden)
        state[f"{block}module.0.bias"] = rnd(attn)
        state[f"{block}module.{spec['ungated_last']}.weight"] = rnd(k, attn)
        state[f"{block}module.{spec['ungated_last']}.bias"] = rnd(k)
    if multi:
        for c in range(n_classes):
            state[f"classifiers.{c}.weight"] = rnd(1, hidden)
            state[f"classifiers.{c}.bias"] = rnd(1)
    else:
        state["classifiers.weight"] = rnd(n_classes, hidden)
        state["classifiers.bias"] = rnd(n_classes)
    for c in range(n_classes):
        state[f"instance_classifiers.{c}.weight"] = rnd(2, hidden)
        state[f"instance_classifiers.{c}.bias"] = rnd(2)
    if labels:
        state["instance_loss_fn.labels"] = torch.arange(2)
    return {spec["prefix"] + key: value for key, value in state.items()}


def direct_outputs(state, h, *, gated, multi, n_classes):
    """The reference forward pass written out as plain float64 tensor maths."""
    s = {
        k.removeprefix("module.").replace("attention_net.module.", "attention_net."): v.double()
        for k, v in state.items()
    }
    block = (
        "attention_net.3."
        if "attention_net.0.weight" in s and any(k.startswith("attention_net.3.") for k in s)
        else "attention_net.2."
    )

    def lin(x, name):
        return x @ s[f"{name}.weight"].T + s[f"{name}.bias"]

    x = torch.relu(lin(h.double(), "attention_net.0"))
    if gated:
        a = torch.tanh(lin(x, f"{block}attention_a.0"))
        b = torch.sigmoid(lin(x, f"{block}attention_b.0"))
        raw = lin(a * b, f"{block}attention_c")
    else:
        last = f"{block}module.3" if f"{block}module.3.weight" in s else f"{block}module.2"
        raw = lin(torch.tanh(lin(x, f"{block}module.0")), last)
    raw = raw.T
    pooled = torch.softmax(raw, dim=1) @ x
    if multi:
        logits = torch.stack([lin(pooled[c], f"classifiers.{c}")[0] for c in range(n_classes)])
    else:
        logits = lin(pooled, "classifiers")[0]
    return logits, torch.softmax(logits, dim=0), raw


CASES = [
    (layout, gated, multi)
    for layout, gated, multi in itertools.product(LAYOUTS, (True, False), (False, True))
    if not (layout == "current_dropout0_ungated" and gated)
]


@pytest.mark.parametrize(("layout", "gated", "multi"), CASES)
def test_reference_layouts_round_trip(tmp_path, layout, gated, multi):
    dims = dict(embed=48, hidden=32, attn=16, n_classes=3 if multi else 2)
    state = reference_state_dict(
        layout, **dims, gated=gated, multi=multi, labels=(layout == "current"), seed=7
    )
    path = tmp_path / "s_0_checkpoint.pt"
    torch.save(state, path)
    model = load_clam_checkpoint(path)
    cfg = model.config
    assert (cfg.embed_dim, cfg.hidden_dim, cfg.attention_dim) == (48, 32, 16)
    assert cfg.gated == gated
    assert cfg.model_type == ("clam_mb" if multi else "clam_sb")
    assert cfg.n_classes == dims["n_classes"]

    h = torch.randn(37, 48, generator=torch.Generator().manual_seed(1))
    logits, prob, raw = direct_outputs(
        state, h, gated=gated, multi=multi, n_classes=dims["n_classes"]
    )
    with torch.no_grad():
        got_logits, got_prob, _, got_raw, _ = model(h)
    np.testing.assert_allclose(got_logits[0].numpy(), logits.numpy(), atol=1e-5)
    np.testing.assert_allclose(got_prob[0].numpy(), prob.numpy(), atol=1e-5)
    np.testing.assert_allclose(got_raw.numpy(), raw.numpy(), atol=1e-5)

    result = predict(model, h.numpy())
    assert result.prediction == int(prob.argmax())
    assert result.attention.shape == (dims["n_classes"] if multi else 1, 37)


@pytest.mark.parametrize(
    ("embed", "size"), [(1024, (512, 256)), (1024, (512, 384)), (768, (512, 256))]
)
def test_reference_sizes(tmp_path, embed, size):
    state = reference_state_dict(
        "current",
        embed=embed,
        hidden=size[0],
        attn=size[1],
        n_classes=2,
        gated=True,
        multi=False,
        labels=True,
        seed=3,
    )
    torch.save(state, tmp_path / "ckpt.pt")
    model, meta = load_clam(tmp_path / "ckpt.pt")
    assert (model.config.embed_dim, model.config.attention_dim) == (embed, size[1])
    assert meta["class_names"] == ["class_0", "class_1"]


def test_wrong_checkpoint_lists_expected_layouts(tmp_path):
    path = tmp_path / "resnet.pt"
    torch.save({"conv1.weight": torch.zeros(4, 3, 3, 3), "fc.weight": torch.zeros(2, 4)}, path)
    with pytest.raises(ModelError, match="Not a CLAM checkpoint.*attention_net.3.attention_a"):
        load_clam_checkpoint(path)


def test_truncated_checkpoint_names_missing_keys(tmp_path):
    state = reference_state_dict(
        "current",
        embed=8,
        hidden=8,
        attn=4,
        n_classes=2,
        gated=True,
        multi=False,
        labels=False,
        seed=0,
    )
    del state["instance_classifiers.1.weight"]
    torch.save(state, tmp_path / "c.pt")
    with pytest.raises(ModelError, match="instance_classifiers.1.weight"):
        load_clam_checkpoint(tmp_path / "c.pt")


def test_pickled_object_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"a": object}, path)
    with pytest.raises(ModelError, match="evil.pt is refused for safety"):
        load_clam_checkpoint(path)


def test_missing_checkpoint(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        load_clam(tmp_path / "nope.pt")


def test_mismatched_feature_dimension(tmp_path):
    state = reference_state_dict(
        "current",
        embed=16,
        hidden=8,
        attn=4,
        n_classes=2,
        gated=True,
        multi=False,
        labels=False,
        seed=0,
    )
    torch.save(state, tmp_path / "c.pt")
    model = load_clam_checkpoint(tmp_path / "c.pt")
    with pytest.raises(ModelError, match="12 dimensions but the model expects 16"):
        predict(model, np.zeros((5, 12), np.float32))
