"""The slide-encoder registry: names, specs, weights found like the patch encoders', features
checked against the tile encoder a slide encoder takes, embeddings written atomically."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from her2viewer.errors import ModelError, OutputError
from her2viewer.features import slide_encoders as slides
from her2viewer.features.store import FeatureFile
from tests.reliability.conftest import fill_disk, leftovers, tiny_disk  # noqa: F401


def write_features(path, encoder: str = "conch_v1_5", dim: int = 768, n: int = 12, **attrs):
    """A features h5 in our layout (the attributes `extract` writes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as h5:
        h5.create_dataset("features", data=rng.normal(size=(n, dim)).astype(np.float32))
        coords = h5.create_dataset(
            "coords", data=np.stack([np.arange(n) * 512, 0 * np.arange(n)], 1)
        )
        coords.attrs.update(attrs or {"patch_size_level0": 512, "patch_size": 512})
        description = {"name": encoder, "dim": dim, "provenance": {"weights": "random", "seed": 0}}
        h5.attrs.update({"encoder": encoder, "encoder_description": json.dumps(description)})
    return path


def mean_spec(**changes) -> slides.SlideEncoderSpec:
    """A toy slide encoder: the mean of the features times a learnt scale."""
    fields = {
        "name": "toy_mean",
        "architecture": "mean",
        "tile_encoder": "conch_v1_5",
        "tile_dim": 768,
        "dim": 768,
        "magnification": "20x",
        "patch_size": 512,
        "licence": "none",
        "card": "this test",
        "hf_repo": "nobody/toy",
        "weights_files": ("toy.safetensors",),
        "build": lambda small: torch.nn.Linear(1, 1, bias=False),
        "embed": lambda model, f, c, size: f.mean(0) * model.weight[0, 0],
    }
    return slides.SlideEncoderSpec(**(fields | changes))


def test_titan_is_registered_with_its_row():
    assert "titan" in slides.slide_encoder_names()
    spec = slides.slide_spec_for("titan")
    assert spec.env_var == "HER2VIEWER_WEIGHTS_TITAN"
    row = spec.row()
    assert (row["name"], row["dim"], row["tile_encoder"], row["patch_size"]) == (
        "titan",
        768,
        "conch_v1_5",
        512,
    )
    json.dumps(row)


def test_an_unknown_name_is_one_sentence_listing_the_known_ones():
    with pytest.raises(
        ModelError, match=r"Unknown slide encoder 'nope'; the known ones are .*titan"
    ):
        slides.slide_spec_for("nope")


def test_the_small_variant_needs_a_seed():
    with pytest.raises(ModelError, match="small variant of titan exists only with random"):
        slides.load_slide_encoder("titan", small=True)


def test_missing_weights_say_where_to_put_them(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.delenv("HER2VIEWER_WEIGHTS_TITAN", raising=False)
    with pytest.raises(ModelError) as info:
        slides.load_slide_encoder("titan")
    message = str(info.value)
    assert "HER2VIEWER_WEIGHTS_TITAN" in message and "huggingface.co/MahmoodLab/TITAN" in message
    assert "CC-BY-NC-ND" in message


def test_a_registered_encoder_embeds_a_features_file(tmp_path, monkeypatch):
    monkeypatch.setitem(slides.SLIDE_SPECS, "toy_mean", mean_spec())
    model, provenance = slides.load_slide_encoder("toy_mean", random_seed=0)
    path = write_features(tmp_path / "s1.h5")
    embedding, record = slides.embed_slide(slides.slide_spec_for("toy_mean"), model, path)
    with h5py.File(path) as h5:
        expected = h5["features"][:].mean(0) * model.weight.item()
    np.testing.assert_allclose(embedding, expected, rtol=1e-5, atol=1e-6)
    assert record == {
        "slide": "s1",
        "features": "s1.h5",
        "tiles": 12,
        "patch_size_level0": 512,
        "tile_encoder": "conch_v1_5",
    }
    assert provenance == {"encoder": "toy_mean", "variant": "full", "weights": "random", "seed": 0}


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"encoder": "resnet50_trunc", "dim": 1024}, "from encoder resnet50_trunc, but titan"),
        ({"encoder": "uni", "dim": 768}, "from encoder uni, but titan takes conch_v1_5"),
        ({"encoder": "", "dim": 512}, "holds 512-d features, but titan takes 768-d"),
    ],
)
def test_features_of_another_tile_encoder_are_refused(tmp_path, kwargs, fragment):
    path = write_features(tmp_path / "s.h5", **kwargs)
    spec = slides.slide_spec_for("titan")
    with pytest.raises(ModelError, match=fragment):
        slides.embed_slide(spec, torch.nn.Identity(), path)


@pytest.mark.parametrize(
    "attrs, warned",
    [
        ({"target_patch_size": 512, "magnification": 20.0}, False),  # ours, as trained
        ({"patch_size": 512, "target_magnification": 20.0}, False),  # TRIDENT's, as trained
        ({"patch_size": 1024, "downsample": [1.0, 1.0]}, False),  # CLAM's: no magnification
        ({"target_patch_size": 256, "magnification": 20.0}, True),
        ({"patch_size": 512, "target_magnification": 10.0}, True),
        ({"target_patch_size": 512, "magnification": float("nan")}, False),
    ],
)
def test_tiles_of_another_size_or_magnification_are_warned_of(attrs, warned):
    warning = slides.scale_warning(slides.slide_spec_for("titan"), attrs, Path("s.h5"))
    assert (warning is not None) == warned
    if warned:
        assert warning.startswith("s.h5 holds features of ") and "512 px tiles at 20x" in warning


def test_a_magnification_with_its_pixel_size_is_read():
    spec = slides.slide_spec_for("gigapath_slide")  # trained at "20x (0.5 um/px)"
    assert slides.scale_warning(spec, {"patch_size": 256, "target_magnification": 20}, "s") is None
    warning = slides.scale_warning(spec, {"patch_size": 256, "target_magnification": 5}, Path("s"))
    assert "256 px tiles at 5x, but gigapath_slide was trained on 256 px tiles at 20x" in warning


def test_the_warning_goes_with_the_embedding(tmp_path, monkeypatch):
    monkeypatch.setitem(slides.SLIDE_SPECS, "toy_mean", mean_spec())
    model, _ = slides.load_slide_encoder("toy_mean", random_seed=0)
    attrs = {"patch_size_level0": 256, "target_patch_size": 256, "magnification": 20.0}
    path = write_features(tmp_path / "s1.h5", **attrs)
    _, record = slides.embed_slide(slides.slide_spec_for("toy_mean"), model, path)
    assert "256 px tiles at 20x, but toy_mean was trained on 512 px" in record["warning"]


def test_clam_coords_give_the_level0_tile_size():
    feats = FeatureFile(
        np.zeros((1, 2)), np.zeros((1, 2)), {"patch_size": 256, "downsample": [2.0, 2.0]}
    )
    assert slides.patch_size_level0(feats, "x.h5") == 512
    with pytest.raises(ModelError, match="x.h5 does not record its tile size"):
        slides.patch_size_level0(FeatureFile(np.zeros((1, 2)), None, {}), "x.h5")


def test_embeddings_are_written_atomically_or_not_at_all(tmp_path, tiny_disk):  # noqa: F811
    spec = slides.slide_spec_for("titan")
    rows = [(np.ones(768, np.float32), {"slide": "a", "tiles": 3})]
    out = slides.write_embeddings(tmp_path / "e.h5", spec, {"weights": "random"}, rows)
    with h5py.File(out) as h5:
        assert h5["a"].shape == (768,) and h5["a"].attrs["encoder"] == "titan"
        assert json.loads(h5.attrs["provenance"]) == {"weights": "random"}
    disk = tiny_disk(64)
    fill_disk(disk, leave_bytes=1024)
    with pytest.raises(OutputError, match="cannot write"):
        slides.write_embeddings(disk / "e.h5", spec, {}, rows * 1)
    assert not (disk / "e.h5").exists() and not leftovers(disk)
