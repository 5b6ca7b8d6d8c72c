"""The extract verb: one slide or a cohort CSV -> CLAM layout; user errors exit 2."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from her2viewer.cli import main
from her2viewer.features.store import read_features


@pytest.fixture(scope="module")
def tiny_encoder(tmp_path_factory):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    path = tmp_path_factory.mktemp("enc") / "tiny.pt"
    torch.jit.script(net.eval()).save(str(path))
    return path


def test_extract_cohort_csv(tmp_path, synthetic_cohort, tiny_encoder, capsys):
    args = [
        "extract",
        str(synthetic_cohort),
        "-o",
        str(tmp_path),
        "--encoder",
        f"torchscript:{tiny_encoder}",
        "--mag",
        "5",
        "--patch-size",
        "32",
        "--device",
        "cpu",
        "--workers",
        "2",
        "--pt",
        "--json",
    ]
    assert main(args) == 0
    summaries = json.loads(capsys.readouterr().out)
    assert [s["slide"] for s in summaries] == ["case000", "case001", "case002", "case003"]
    assert all(s["status"] == "done" and s["dim"] == 4 for s in summaries)
    feats = read_features(tmp_path / "h5_files" / "case000.h5")
    assert len(feats) == summaries[0]["patches"] and feats.attrs["patch_size"] == 32
    assert (tmp_path / "pt_files" / "case003.pt").is_file()
    assert (tmp_path / "patches" / "case001.h5").is_file()
    assert main(args[:-1]) == 0
    assert "case000: exists" in capsys.readouterr().out
    other = [a if a != "32" else "48" for a in args]
    other[other.index(f"torchscript:{tiny_encoder}")] = "resnet50_trunc"
    assert main([*other, "--random-weights", "1"]) == 2
    assert "from another encoder" in capsys.readouterr().err


def test_extract_user_errors(tmp_path, synthetic_case, capsys, monkeypatch):
    he = str(synthetic_case / "he.svs")
    assert main(["extract", he, he, "-o", str(tmp_path), "--random-weights", "0"]) == 2
    assert "Several slides are named he" in capsys.readouterr().err
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    assert main(["extract", he, "-o", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "No ImageNet weights" in err and len(err.strip().splitlines()) == 1
    bad_csv = tmp_path / "cohort.csv"
    bad_csv.write_text("case_id,score\nc1,3\n")
    assert main(["extract", str(bad_csv), "-o", str(tmp_path), "--random-weights", "0"]) == 2
    assert "needs one of the columns" in capsys.readouterr().err
    listing = tmp_path / "slides.txt"
    listing.write_text(f"# two slides with one name\n{he}\n\n{he}\n")
    assert main(["extract", str(listing), "-o", str(tmp_path), "--random-weights", "0"]) == 2
    assert "Several slides are named he" in capsys.readouterr().err
    assert main(["extract", str(tmp_path / "no.txt"), "-o", str(tmp_path)]) == 2
    assert "Slide list not found" in capsys.readouterr().err
    assert not (tmp_path / "h5_files").exists()
