"""Issue 13 in the extraction pipeline: full disks, resumes that verify, reuse by fingerprint,
names from CSVs, numeric options, unwritable outputs, a lock, and hostile coordinates files."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch
from torch import nn

from her2viewer.cli import main
from her2viewer.errors import ModelError, OutputError
from her2viewer.features.encoders import torchscript_encoder
from her2viewer.features.engine import extract_features
from her2viewer.features.store import read_features
from her2viewer.slide import open_slide
from her2viewer.tissue import make_patch_grid, read_coords_h5, segment_tissue, write_coords_h5
from tests.reliability.conftest import (
    assert_one_line_error,
    fill_disk,
    leftovers,
    run_verb,
)

PATCHING = ["--mag", "5", "--patch-size", "32", "--device", "cpu", "--workers", "2"]


def _script(path, net: nn.Module):
    torch.manual_seed(0)
    torch.jit.script(net.eval()).save(str(path))
    return path


@pytest.fixture(scope="module")
def encoder_file(tmp_path_factory):
    """A seeded TorchScript encoder with 64 features per patch."""
    net = nn.Sequential(nn.Conv2d(3, 64, 3, stride=2), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    return _script(tmp_path_factory.mktemp("enc") / "enc64.pt", net)


@pytest.fixture(scope="module")
def slide_and_grid(synthetic_case):
    slide = open_slide(synthetic_case / "he.svs")
    grid = make_patch_grid(slide, segment_tissue(slide), magnification=5.0, patch_size=32)
    yield slide, grid
    slide.close()


def _extract(slide_path, out, encoder_file, *extra) -> list[str]:
    return ["extract", str(slide_path), "-o", str(out), "--encoder", f"torchscript:{encoder_file}",
            *PATCHING, *extra]  # fmt: skip


def _one_line(capsys, *fragments) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


# item 1: a full disk, and resumes that verify what they resume


def test_full_disk_extract_is_one_sentence_and_the_rerun_equals_a_clean_run(
    tiny_disk, tmp_path, synthetic_case, encoder_file, capsys
):
    slide = synthetic_case / "he.svs"
    disk = tiny_disk(512)
    fill_disk(disk, 40_000)
    result = run_verb(*_extract(slide, disk / "out", encoder_file))
    assert_one_line_error(result, "disk is full")
    assert not (disk / "out" / "h5_files" / "he.h5").exists()
    (disk / ".filler").unlink()
    assert main(_extract(slide, disk / "out", encoder_file)) == 0
    assert main(_extract(slide, tmp_path / "clean", encoder_file)) == 0
    capsys.readouterr()
    got = read_features(disk / "out" / "h5_files" / "he.h5")
    clean = read_features(tmp_path / "clean" / "h5_files" / "he.h5")
    np.testing.assert_array_equal(got.features, clean.features)
    np.testing.assert_array_equal(got.coords, clean.coords)
    assert leftovers(disk) == []


def _crash_after_first_batch(done, total):
    raise RuntimeError("power cut")


def test_resume_recomputes_rows_that_did_not_reach_the_disk(tmp_path, slide_and_grid, encoder_file):
    slide, grid = slide_and_grid
    encoder = torchscript_encoder(encoder_file, input_size=24)
    out = tmp_path / "he.h5"
    with pytest.raises(RuntimeError, match="power cut"):
        extract_features(slide, grid, encoder, out, device="cpu", batch_size=16,
                         progress=_crash_after_first_batch)  # fmt: skip
    with h5py.File(f"{out}.partial", "a") as h5:  # the counter lies: rows 16.. are zeros
        assert int(h5.attrs["n_done"]) == 16
        h5.attrs["n_done"] = len(grid)
    resumed = extract_features(slide, grid, encoder, out, device="cpu", batch_size=16)
    clean = extract_features(slide, grid, encoder, tmp_path / "c.h5", device="cpu", batch_size=16)
    assert resumed.resumed_from == 16
    np.testing.assert_array_equal(read_features(out).features, read_features(clean.path).features)


def test_partial_of_another_slide_is_not_resumed(tmp_path, slide_and_grid, encoder_file):
    slide, grid = slide_and_grid
    encoder = torchscript_encoder(encoder_file, input_size=24)
    out = tmp_path / "he.h5"
    with pytest.raises(RuntimeError):
        extract_features(slide, grid, encoder, out, device="cpu", batch_size=16,
                         progress=_crash_after_first_batch)  # fmt: skip
    with h5py.File(f"{out}.partial", "a") as h5:
        h5.attrs["slide_fingerprint"] = "0123456789abcdef"
    assert extract_features(slide, grid, encoder, out, device="cpu").resumed_from == 0


# item 2: non-finite features are never written


def test_non_finite_features_are_refused_naming_the_slide(tmp_path, slide_and_grid):
    slide, grid = slide_and_grid

    class NaNs(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.mean(dim=(2, 3)) * float("nan")

    encoder = torchscript_encoder(_script(tmp_path / "nan.pt", NaNs()), input_size=24)
    with pytest.raises(ModelError, match="non-finite features .* slide he"):
        extract_features(slide, grid, encoder, tmp_path / "out" / "he.h5", device="cpu")
    assert list((tmp_path / "out").iterdir()) == []


# item 3: files of another slide with the same stem are not reused


def test_same_stem_of_another_slide_is_recomputed(tmp_path, synthetic_cohort, encoder_file, capsys):
    root = synthetic_cohort.parent
    out = tmp_path / "out"
    assert main([*_extract(root / "case000" / "he.svs", out, encoder_file), "--json"]) == 0
    capsys.readouterr()
    assert main([*_extract(root / "case001" / "he.svs", out, encoder_file), "--json"]) == 0
    assert '"status": "done"' in capsys.readouterr().out
    with open_slide(root / "case001" / "he.svs") as slide:
        fingerprint = slide.info.fingerprint
    assert read_coords_h5(out / "patches" / "he.h5").fingerprint == fingerprint
    assert read_features(out / "h5_files" / "he.h5").encoder["slide_fingerprint"] == fingerprint
    assert main(_extract(root / "case001" / "he.svs", out, encoder_file)) == 0
    assert "he: exists" in capsys.readouterr().out


# item 7: names from a cohort CSV never leave the output folder


@pytest.mark.parametrize("case_id", ["../../escaped", "/tmp/escaped", "sub/x", "..", ".hidden"])
def test_case_ids_that_are_not_file_names_are_refused(
    tmp_path, synthetic_case, encoder_file, capsys, case_id
):
    cohort = tmp_path / "in" / "cohort.csv"
    cohort.parent.mkdir()
    cohort.write_text(f"case_id,slide_path\n{case_id},{synthetic_case / 'he.svs'}\n")
    out = tmp_path / "in" / "out"
    assert main(_extract(cohort, out, encoder_file)) == 2
    _one_line(capsys, case_id, "not a plain file name")
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["cohort.csv", "in"]


# item 13 and numeric options: refused by argparse before any work


@pytest.mark.parametrize(
    "args",
    [
        ["clam", "heatmap", "s.svs", "--model", "m", "-o", "h.png", "--overlap", "1.0"],
        ["clam", "heatmap", "s.svs", "--model", "m", "-o", "h.png", "--overlap", "0.99"],
        ["clam", "heatmap", "s.svs", "--model", "m", "-o", "h.png", "--overlap", "nan"],
        ["clam", "heatmap", "s.svs", "--model", "m", "-o", "h.png", "--alpha", "-1"],
        ["clam", "heatmap", "s.svs", "--model", "m", "-o", "h.png", "--patch-size", "0"],
        ["extract", "s.svs", "-o", "o", "--batch-size", "0"],
        ["extract", "s.svs", "-o", "o", "--workers", "-2"],
        ["extract", "s.svs", "-o", "o", "--patch-size", "100000"],
        ["extract", "s.svs", "-o", "o", "--mag", "inf"],
        ["patch", "s.svs", "-o", "c.h5", "--size", "0"],
        ["patch", "s.svs", "-o", "c.h5", "--max-background", "2"],
        ["segment", "s.svs", "-o", "o", "--seg-level", "-5"],
    ],
)
def test_numeric_options_are_checked_at_parse_time(args, capsys):
    with pytest.raises(SystemExit) as stop:
        main(args)
    assert stop.value.code == 2
    assert "argument" in capsys.readouterr().err


# item 14: unwritable or existing outputs, and two extractions into one folder


def test_outputs_that_cannot_be_written_are_one_sentence(
    tmp_path, synthetic_case, encoder_file, capsys
):
    slide = str(synthetic_case / "he.svs")
    blocker = tmp_path / "file"
    blocker.write_text("keep")
    assert main(["segment", slide, "-o", str(blocker)]) == 2
    _one_line(capsys, str(blocker), "it is a file")
    assert main(["segment", slide, "-o", str(blocker / "sub")]) == 2
    _one_line(capsys, str(blocker))
    assert main(["patch", slide, "-o", str(tmp_path)]) == 2
    _one_line(capsys, "it is a folder")
    assert main(_extract(slide, blocker, encoder_file)) == 2
    _one_line(capsys, "it is a file")
    (tmp_path / "out" / "h5_files" / "he.h5").mkdir(parents=True)
    assert main(_extract(slide, tmp_path / "out", encoder_file)) == 2
    _one_line(capsys, "he.h5: it is a folder")
    heatmap = ["clam", "heatmap", slide, "--model", "m", "-o", str(tmp_path / "h.png")]
    assert main([*heatmap, "--tiff", str(tmp_path)]) == 2
    _one_line(capsys, "it is a folder")
    assert blocker.read_text() == "keep" and leftovers(tmp_path) == []


def test_segment_on_a_full_disk_leaves_nothing(tiny_disk, synthetic_case, capsys):
    disk = tiny_disk(64)
    out = disk / "seg"
    out.mkdir()
    fill_disk(disk)
    assert main(["segment", str(synthetic_case / "he.svs"), "-o", str(out)]) == 2
    _one_line(capsys, "disk is full")
    assert list(out.iterdir()) == []


def test_overlay_tiff_on_a_full_disk_leaves_nothing(tiny_disk):
    from her2viewer.overlay.export import write_overlay_tiff
    from her2viewer.overlay.layers import HeatmapLayer

    disk = tiny_disk(64)
    layer = HeatmapLayer("a", values=np.random.default_rng(0).random((400, 400)), downsample=4.0)
    fill_disk(disk)
    with pytest.raises(OutputError, match="disk is full"):
        write_overlay_tiff(disk / "o.tif", layer, (1600, 1600), 4.0)
    assert [p.name for p in disk.iterdir()] == [".filler"]


def test_second_extraction_into_a_folder_is_refused(tmp_path, synthetic_case, encoder_file, capsys):
    from her2viewer.cli.extract import extraction_lock

    out = tmp_path / "out"
    out.mkdir()
    with extraction_lock(out):  # as a first extraction holds it
        assert main(_extract(synthetic_case / "he.svs", out, encoder_file)) == 2
    _one_line(capsys, "Another extraction is writing to", str(out))
    assert not (out / "h5_files").exists()


# item 16: hostile coordinates files


def _tampered(path, **change) -> None:
    with h5py.File(path, "a") as h5:
        for key, value in change.items():
            if key == "coords":
                del h5["coords"]
                h5["coords"] = value
            else:
                h5["coords"].attrs[key] = value


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"patch_level": 99}, "'patch_level' is 99"),
        ({"patch_level": 5}, "patch_level 5 does not exist"),
        ({"patch_size": 0}, "'patch_size' is 0"),
        ({"patch_size": -32}, "'patch_size' is -32"),
        ({"patch_size": 10**9}, "'patch_size' is 1e+09"),
        ({"coords": np.array([[0.0, np.nan]])}, "coords row 0"),
        ({"coords": np.array([[64, 64], [-64, 0]])}, "coords row 1"),
        ({"coords": np.array([[64, 64], [10**6, 0]])}, "lies outside"),
    ],
)
def test_hostile_coordinates_are_refused_naming_the_file(
    tmp_path, slide_and_grid, synthetic_case, encoder_file, capsys, change, fragment
):
    _, grid = slide_and_grid
    out = tmp_path / "out"
    coords = write_coords_h5(out / "patches" / "he.h5", grid)
    keep = dict(h5py.File(coords)["coords"].attrs)
    _tampered(coords, **change)
    if "coords" in change:  # the new dataset keeps the grid's attributes
        _tampered(coords, **{k: v for k, v in keep.items()})
    assert main(_extract(synthetic_case / "he.svs", out, encoder_file)) == 2
    _one_line(capsys, "he.h5", fragment)
    assert not (out / "h5_files" / "he.h5").exists()
