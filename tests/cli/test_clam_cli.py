"""The clam infer verb: JSON contract and one-line user errors."""

from __future__ import annotations

import json

import h5py
import numpy as np
import torch

from her2viewer.cli import main
from her2viewer.models.clam import CLAM, ClamConfig, predict, save_clam_bundle


def _features(path, n=12, dim=10):
    feats = np.random.default_rng(0).normal(size=(n, dim)).astype(np.float32)
    with h5py.File(path, "w") as h5:
        h5["features"] = feats
        h5["coords"] = np.arange(2 * n).reshape(n, 2).astype(np.int64) * 256
    return feats


def test_infer_json_and_text(tmp_path, capsys):
    torch.manual_seed(0)
    model = CLAM(ClamConfig(model_type="clam_mb", embed_dim=10, hidden_dim=8, attention_dim=4))
    save_clam_bundle(tmp_path / "b.zip", model, {"class_names": ["negative", "positive"]})
    feats = _features(tmp_path / "f.h5")
    assert (
        main(
            [
                "clam",
                "infer",
                "--model",
                str(tmp_path / "b.zip"),
                "--features",
                str(tmp_path / "f.h5"),
                "--json",
            ]
        )
        == 0
    )
    out = json.loads(capsys.readouterr().out)
    expected = predict(model.eval(), feats)
    np.testing.assert_allclose(out["probabilities"], expected.probabilities, atol=1e-6)
    assert out["prediction"] == expected.prediction
    assert np.array(out["attention"]).shape == (2, 12)
    np.testing.assert_allclose(out["attention"], expected.attention, atol=1e-6)
    assert (
        main(
            [
                "clam",
                "infer",
                "--model",
                str(tmp_path / "b.zip"),
                "--features",
                str(tmp_path / "f.h5"),
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert "P(positive)" in text and "prediction:" in text and "patch" in text


def test_infer_user_errors(tmp_path, capsys):
    torch.save({"fc.weight": torch.zeros(2, 2)}, tmp_path / "wrong.pt")
    _features(tmp_path / "f.h5", dim=10)
    assert (
        main(
            [
                "clam",
                "infer",
                "--model",
                str(tmp_path / "wrong.pt"),
                "--features",
                str(tmp_path / "f.h5"),
            ]
        )
        == 2
    )
    assert "Not a CLAM checkpoint" in capsys.readouterr().err
    model = CLAM(ClamConfig(embed_dim=1024))
    torch.save(model.state_dict(), tmp_path / "s_0_checkpoint.pt")
    assert (
        main(
            [
                "clam",
                "infer",
                "--model",
                str(tmp_path / "s_0_checkpoint.pt"),
                "--features",
                str(tmp_path / "f.h5"),
            ]
        )
        == 2
    )
    assert "10 dimensions but the model expects 1024" in capsys.readouterr().err
    assert (
        main(
            [
                "clam",
                "infer",
                "--model",
                str(tmp_path / "s_0_checkpoint.pt"),
                "--features",
                str(tmp_path / "none.h5"),
            ]
        )
        == 2
    )
    assert "Features file not found" in capsys.readouterr().err
