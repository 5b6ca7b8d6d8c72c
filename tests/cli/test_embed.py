"""`her2viewer embed`: slide embeddings from CONCH v1.5 features made by `extract` (ours) or
laid out by TRIDENT, one [768] dataset per slide; other encoders' features refused in one line;
`encoders list --slide`."""

from __future__ import annotations

import json
import shutil

import h5py
import numpy as np
import pytest

from her2viewer.cli.main import main
from her2viewer.features.store import read_features
from her2viewer.features.trident import trident_path, write_trident
from tests.reliability.conftest import one_line_error

TITAN_SMALL = ["--encoder", "titan", "--small", "--random-seed", "0", "--device", "cpu"]


@pytest.fixture(scope="module")
def conch_features(synthetic_case, tmp_path_factory):
    """`extract --encoder conch_v1_5 --small` features of the synthetic case's H&E, 512 px
    tiles at 20x as TITAN takes them (h5_files/he.h5)."""
    out = tmp_path_factory.mktemp("conch")
    argv = ["extract", str(synthetic_case / "he.svs"), "-o", str(out), "--encoder", "conch_v1_5"]
    argv += ["--small", "--random-weights", "0", "--device", "cpu", "--patch-size", "512"]
    assert main([*argv, "--quiet"]) == 0
    return out


def test_embed_writes_one_768_vector_per_slide(conch_features, tmp_path, capsys):
    he = conch_features / "h5_files" / "he.h5"
    other = tmp_path / "in" / "other.h5"  # a second slide: three of its tiles background
    other.parent.mkdir()
    shutil.copy(he, other)
    with h5py.File(other, "r+") as h5:
        h5["features"][:3] = 0.0  # background
    capsys.readouterr()
    out = tmp_path / "emb.h5"
    argv = ["embed", str(conch_features), str(other.parent), *TITAN_SMALL, "-o", str(out)]
    assert main([*argv, "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert [s["slide"] for s in summary["slides"]] == ["he", "other"]
    assert summary["provenance"] == {
        "encoder": "titan",
        "variant": "small",
        "weights": "random",
        "seed": 0,
    }
    with h5py.File(out) as h5:
        assert sorted(h5) == ["he", "other"] and h5.attrs["encoder"] == "titan"
        for slide in ("he", "other"):
            assert h5[slide].shape == (768,) and np.isfinite(h5[slide][:]).all()
            assert h5[slide].attrs["tile_encoder"] == "conch_v1_5"
            assert h5[slide].attrs["tiles"] == len(read_features(he)) > 3
        assert not np.allclose(h5["he"][:], h5["other"][:])


def test_a_trident_job_folder_is_accepted(conch_features, tmp_path, capsys):
    job = tmp_path / "job" / "20x_512px_0px_overlap"
    feats = read_features(conch_features / "h5_files" / "he.h5")
    write_trident(trident_path(job, "conch_v1_5", "he"), feats, "he")
    assert trident_path(job, "conch_v1_5", "he").parent.name == "features_conch_v15"
    ours, theirs = tmp_path / "ours.h5", tmp_path / "theirs.h5"
    he = str(conch_features / "h5_files" / "he.h5")
    assert main(["embed", he, *TITAN_SMALL, "-o", str(ours)]) == 0
    assert main(["embed", str(tmp_path / "job"), *TITAN_SMALL, "-o", str(theirs)]) == 0
    assert "wrote" in capsys.readouterr().out
    with h5py.File(ours) as a, h5py.File(theirs) as b:
        np.testing.assert_allclose(a["he"][:], b["he"][:], rtol=1e-5, atol=1e-6)


def test_features_of_another_encoder_are_refused_in_one_line(tmp_path, capsys):
    path = tmp_path / "s.h5"
    with h5py.File(path, "w") as h5:
        h5.create_dataset("features", data=np.zeros((3, 1024), np.float32))
        h5.create_dataset("coords", data=np.zeros((3, 2), np.int64)).attrs["patch_size_level0"] = (
            512
        )
        h5.attrs.update(
            {"encoder": "resnet50_trunc", "encoder_description": '{"name": "resnet50_trunc"}'}
        )
    out = tmp_path / "e.h5"
    assert main(["embed", str(path), *TITAN_SMALL, "-o", str(out)]) == 2
    one_line_error(capsys, "s.h5 holds features from encoder resnet50_trunc", "conch_v1_5")
    assert not out.exists()


@pytest.mark.parametrize(
    "make, fragment",
    [
        (lambda d: d / "missing.h5", "Features file or folder not found"),
        (lambda d: d, "No features files in"),
    ],
)
def test_missing_inputs_are_one_line(tmp_path, capsys, make, fragment):
    assert main(["embed", str(make(tmp_path)), *TITAN_SMALL, "-o", str(tmp_path / "e.h5")]) == 2
    one_line_error(capsys, fragment)


def test_encoders_list_slide(capsys):
    assert main(["encoders", "list", "--slide", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    titan = next(row for row in rows if row["name"] == "titan")
    assert (titan["dim"], titan["tile_encoder"], titan["tile_dim"]) == (768, "conch_v1_5", 768)
    assert main(["encoders", "list", "--slide"]) == 0
    assert "takes conch_v1_5 (768-d) features of 512 px tiles" in capsys.readouterr().out


def test_tiles_of_another_scale_are_embedded_with_a_warning(conch_features, tmp_path, capsys):
    other = tmp_path / "in" / "small_tiles.h5"
    other.parent.mkdir()
    shutil.copy(conch_features / "h5_files" / "he.h5", other)
    with h5py.File(other, "r+") as h5:
        h5["coords"].attrs["target_patch_size"] = 256  # as if cut at 256 px
    capsys.readouterr()
    assert main(["embed", str(other), *TITAN_SMALL, "-o", str(tmp_path / "e.h5")]) == 0
    captured = capsys.readouterr()
    assert "small_tiles: " in captured.out
    assert captured.err.startswith("warning: small_tiles.h5 holds features of 256 px tiles at 20x")
    with h5py.File(tmp_path / "e.h5") as h5:
        assert "256 px tiles" in h5["small_tiles"].attrs["warning"]
