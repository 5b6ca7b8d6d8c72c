"""Issue 13, last probe findings on inputs: empty slides, pickled features and weights."""

from __future__ import annotations

import fractions
import json
import pickle
import warnings

import pytest
import torch
from PIL import Image

from her2viewer.cli import main
from her2viewer.errors import ModelError
from her2viewer.features.encoders import load_weights_file
from her2viewer.models.clam import DEMO_CLAM_BUNDLE
from tests.reliability.conftest import one_line_error


@pytest.fixture
def pickled_pt(tmp_path):
    """A ``torch.save``-d file that holds a Python object beyond tensors."""
    path = tmp_path / "evil.pt"
    torch.save({"model": fractions.Fraction(1, 2)}, path)
    return path


@pytest.mark.parametrize("size", [(256, 256), (1, 1)])
def test_patch_without_tissue_is_not_evaluable(tmp_path, capsys, size):
    slide = tmp_path / "blank.png"
    Image.new("RGB", size, "white").save(slide)
    coords = tmp_path / "c.h5"
    assert main(["patch", str(slide), "-o", str(coords), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["status"] == "not_evaluable"
    assert summary["reason"] == "no tissue was found in blank.png"
    assert summary["coords"] is None and not coords.exists()


def test_segment_without_tissue_says_so(tmp_path, capsys):
    slide = tmp_path / "blank.png"
    Image.new("RGB", (64, 64), "white").save(slide)
    assert main(["segment", str(slide), "-o", str(tmp_path / "seg")]) == 0
    out = capsys.readouterr().out
    assert "status: not_evaluable" in out and "no tissue was found in blank.png" in out
    assert (tmp_path / "seg" / "blank_tissue_mask.png").is_file()


def test_pickled_features_are_refused_for_safety(pickled_pt, capsys):
    args = ["clam", "infer", "--model", str(DEMO_CLAM_BUNDLE), "--features", str(pickled_pt)]
    assert main(args) == 2
    line = one_line_error(capsys, "evil.pt is refused for safety", "torch.save")
    assert "weights_only" not in line and "likely succeed" not in line


def test_pickled_encoder_weights_are_refused_for_safety(pickled_pt):
    with pytest.raises(ModelError, match="evil.pt is refused for safety") as info:
        load_weights_file(pickled_pt)
    assert "weights_only" not in str(info.value)


def test_non_bundle_model_prints_no_torch_warning(tmp_path, capsys):
    model = tmp_path / "model.json"  # a bare pickle (protocol 4), neither bundle nor .pt zip
    model.write_bytes(pickle.dumps(fractions.Fraction(1, 2), protocol=4))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["clam", "infer", "--model", str(model), "--features", str(model)]) == 2
    assert [str(w.message) for w in caught] == []
    line = one_line_error(capsys, "model.json")
    assert "weights_only" not in line
