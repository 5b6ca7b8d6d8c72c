"""TRIDENT interoperability: its features_<encoder>/<slide>.h5 files load (in `clam infer`
too), and `extract --layout trident` writes ours in that layout."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from her2viewer.cli.main import main
from her2viewer.errors import ModelError
from her2viewer.features.store import find_features, read_features
from her2viewer.models.clam import CLAM, ClamConfig, save_clam_bundle

#: TRIDENT's coords attributes (trident/IO.py save_coords), in the order it writes them.
COORDS_ATTRS = {
    "patch_size",
    "patch_size_level0",
    "level0_magnification",
    "target_magnification",
    "overlap",
    "name",
    "savetodir",
    "level0_width",
    "level0_height",
}


def write_trident_file(folder, slide: str, enc_name: str, dim: int, n: int = 30):
    """A features file exactly as TRIDENT's save_h5 lays it out (chunked, resizable)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    coords = np.stack([np.arange(n) * 512, np.full(n, 1024)], 1).astype(np.int64)
    with h5py.File(folder / f"{slide}.h5", "w") as h5:
        feats = h5.create_dataset(
            "features", data=rng.normal(size=(n, dim)).astype(np.float32),
            chunks=(1, dim), maxshape=(None, dim),
        )  # fmt: skip
        feats.attrs.update({"name": slide, "savetodir": str(folder), "encoder": enc_name})
        data = h5.create_dataset("coords", data=coords, chunks=(1, 2), maxshape=(None, 2))
        data.attrs.update(
            {
                "patch_size": 256,
                "patch_size_level0": 512,
                "level0_magnification": 40,
                "target_magnification": 20,
                "overlap": 0,
                "name": slide,
                "savetodir": str(folder.parent),
                "level0_width": 20000,
                "level0_height": 16000,
            }
        )
    return folder / f"{slide}.h5"


@pytest.fixture()
def trident_job(tmp_path):
    """A TRIDENT job folder with UNI and CONCH v1.5 features of one slide."""
    coords_dir = tmp_path / "job" / "20x_256px_0px_overlap"
    write_trident_file(coords_dir / "features_uni_v1", "slideA", "uni_v1", 1024)
    write_trident_file(coords_dir / "features_conch_v15", "slideA", "conch_v15", 768)
    return coords_dir


def uni_bundle(path):
    """A (random) CLAM bundle that says it was trained on UNI features."""
    encoder = {"name": "uni", "dim": 1024, "input_size": 224}
    meta = {"class_names": ["negative", "positive"], "encoder": encoder}
    return save_clam_bundle(path, CLAM(ClamConfig(embed_dim=1024)), meta)


def test_trident_files_read_with_our_encoder_names(trident_job):
    feats = read_features(trident_job / "features_uni_v1" / "slideA.h5")
    assert feats.features.shape == (30, 1024) and feats.coords[1].tolist() == [512, 1024]
    assert feats.encoder["encoder"] == "uni"
    assert json.loads(feats.encoder["encoder_description"])["trident_name"] == "uni_v1"
    assert int(feats.attrs["patch_size_level0"]) == 512
    assert find_features(trident_job / "features_uni_v1", "slideA").parent.name == "features_uni_v1"
    with pytest.raises(ModelError, match="from several encoders .*features_conch_v15"):
        find_features(trident_job, "slideA")
    (trident_job / "features_conch_v15" / "slideA.h5").unlink()
    assert find_features(trident_job, "slideA").parent.name == "features_uni_v1"


def test_trident_features_load_in_clam_infer(trident_job, tmp_path, capsys):
    bundle = uni_bundle(tmp_path / "bundle")
    uni = trident_job / "features_uni_v1" / "slideA.h5"
    assert main(["clam", "infer", "--model", str(bundle), "--features", str(uni), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert np.shape(out["attention"]) == (1, 30) and abs(sum(out["probabilities"]) - 1) < 1e-5
    conch = trident_job / "features_conch_v15" / "slideA.h5"
    assert main(["clam", "infer", "--model", str(bundle), "--features", str(conch)]) == 2
    err = capsys.readouterr().err.strip()
    assert "features from encoder conch_v1_5" in err and "trained on uni" in err
    assert "\n" not in err


def test_extract_writes_the_trident_layout(synthetic_case, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["extract", str(synthetic_case / "he.svs"), "-o", str(out), "--layout", "trident"]
    args += ["--encoder", "lunit_vits8", "--small", "--random-weights", "3", "--mag", "5"]
    args += ["--patch-size", "64", "--device", "cpu", "--workers", "2", "--quiet", "--json"]
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out)[0]
    written = out / "features_lunit-vits8" / "he.h5"
    assert summary["features"] == str(written)
    ours = read_features(out / "h5_files" / "he.h5")
    with h5py.File(written, "r") as h5:
        assert dict(h5["features"].attrs)["encoder"] == "lunit-vits8"
        assert set(h5["coords"].attrs) == COORDS_ATTRS
        assert h5["coords"].attrs["target_magnification"] == 5.0
        assert h5["coords"].attrs["patch_size"] == 64
    back = read_features(written)
    np.testing.assert_array_equal(back.features, ours.features)
    np.testing.assert_array_equal(back.coords, ours.coords)
    assert back.encoder["encoder_identity"] == ours.encoder["encoder_identity"]
