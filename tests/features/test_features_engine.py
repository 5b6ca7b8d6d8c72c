"""Extraction engine: CLAM-compatible output, resume after a hard kill, cancellation."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import h5py
import numpy as np
import pytest
import torch
from torch import nn

from her2viewer.errors import ModelError
from her2viewer.features.encoders import Encoder, torchscript_encoder
from her2viewer.features.engine import default_batching, extract_features
from her2viewer.features.store import read_features
from her2viewer.jobs import Cancelled, CancelToken
from her2viewer.slide import open_slide
from her2viewer.tissue import make_patch_grid, read_coords_h5, segment_tissue


@pytest.fixture(scope="module")
def tiny_script(tmp_path_factory):
    """A tiny TorchScript CNN (seeded random weights) so the subprocess builds the same one."""
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()
    )
    path = tmp_path_factory.mktemp("enc") / "tiny.pt"
    torch.jit.script(net.eval()).save(str(path))
    return path


@pytest.fixture(scope="module")
def slide_and_grid(synthetic_case):
    slide = open_slide(synthetic_case / "he.svs")
    grid = make_patch_grid(slide, segment_tissue(slide), magnification=5.0, patch_size=32)
    yield slide, grid
    slide.close()


def tiny(path) -> Encoder:
    return torchscript_encoder(path, input_size=24)


def test_features_file_is_clam_compatible(tmp_path, slide_and_grid, tiny_script):
    slide, grid = slide_and_grid
    seen = []
    result = extract_features(
        slide,
        grid,
        tiny(tiny_script),
        tmp_path / "he.h5",
        device="cpu",
        batch_size=16,
        workers=2,
        progress=lambda d, t: seen.append((d, t)),
        pt_path=tmp_path / "he.pt",
    )
    assert result.n_patches == len(grid) > 100 and result.dim == 8
    assert seen[-1] == (len(grid), len(grid)) and len(seen) == -(-len(grid) // 16)
    with h5py.File(tmp_path / "he.h5") as h5:
        assert h5["features"].shape == (len(grid), 8) and h5["features"].dtype == np.float32
        np.testing.assert_array_equal(h5["coords"][:], grid.coords)
        assert "n_done" not in h5.attrs
    coords_back = read_coords_h5(tmp_path / "he.h5")
    assert coords_back.patch_size == grid.patch_size and coords_back.patch_level == 1
    feats = read_features(tmp_path / "he.h5")
    np.testing.assert_array_equal(read_features(tmp_path / "he.pt").features, feats.features)
    # row i is the encoder applied to patch i, whatever the batching and threading
    enc = tiny(tiny_script)
    for i in (0, len(grid) - 1):
        tile = torch.from_numpy(np.array(enc.prepare_tile(grid.read_patch(slide, i))))[None]
        with torch.no_grad():
            np.testing.assert_allclose(
                feats.features[i], enc.module(enc.normalise(tile))[0], rtol=1e-5, atol=1e-6
            )
    assert not list(tmp_path.glob("*.partial"))


KILL_SCRIPT = textwrap.dedent("""
    import os, signal, sys
    from her2viewer.features.encoders import torchscript_encoder
    from her2viewer.features.engine import extract_features
    from her2viewer.slide import open_slide
    from her2viewer.tissue import make_patch_grid, segment_tissue

    slide = open_slide(sys.argv[1])
    grid = make_patch_grid(slide, segment_tissue(slide), magnification=5.0, patch_size=32)
    encoder = torchscript_encoder(sys.argv[2], input_size=24)

    def die(done, total):
        if done >= 48:
            os.kill(os.getpid(), signal.SIGKILL)

    extract_features(slide, grid, encoder, sys.argv[3], device="cpu", batch_size=16,
                     workers=2, progress=die)
""")


def test_killed_run_resumes_to_the_same_file(tmp_path, slide_and_grid, tiny_script, synthetic_case):
    slide, grid = slide_and_grid
    out = tmp_path / "killed.h5"
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            KILL_SCRIPT,
            str(synthetic_case / "he.svs"),
            str(tiny_script),
            str(out),
        ],
        capture_output=True,
        timeout=300,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    assert not out.exists()
    with h5py.File(str(out) + ".partial") as h5:
        assert int(h5.attrs["n_done"]) == 48
    resumed = extract_features(slide, grid, tiny(tiny_script), out, device="cpu", batch_size=16)
    assert resumed.resumed_from == 48
    clean = extract_features(
        slide, grid, tiny(tiny_script), tmp_path / "clean.h5", device="cpu", batch_size=16
    )
    assert clean.resumed_from == 0
    a, b = read_features(out), read_features(clean.path)
    np.testing.assert_array_equal(a.features, b.features)
    np.testing.assert_array_equal(a.coords, b.coords)


def test_partial_from_another_encoder_is_restarted(tmp_path, slide_and_grid, tiny_script):
    slide, grid = slide_and_grid
    out = tmp_path / "x.h5"

    def crash(done, total):
        raise RuntimeError("power cut")

    with pytest.raises(RuntimeError):
        extract_features(
            slide, grid, tiny(tiny_script), out, device="cpu", batch_size=16, progress=crash
        )
    assert os.path.exists(str(out) + ".partial")
    other = torchscript_encoder(tiny_script, input_size=20)
    result = extract_features(slide, grid, other, out, device="cpu", batch_size=16)
    assert result.resumed_from == 0


def test_cancel_leaves_nothing(tmp_path, slide_and_grid, tiny_script):
    slide, grid = slide_and_grid
    token = CancelToken()
    batches = []

    def on_batch(start, feats):
        batches.append(start)
        token.cancel()

    with pytest.raises(Cancelled):
        extract_features(
            slide,
            grid,
            tiny(tiny_script),
            tmp_path / "c.h5",
            device="cpu",
            batch_size=16,
            on_batch=on_batch,
            cancel=token,
            pt_path=tmp_path / "c.pt",
        )
    assert batches == [0]
    assert list(tmp_path.iterdir()) == []


def test_empty_grid_and_bad_arguments(tmp_path, slide_and_grid, tiny_script):
    slide, grid = slide_and_grid
    empty = type(grid)(**{**grid.__dict__, "coords": np.zeros((0, 2), np.int64)})
    with pytest.raises(ModelError, match="no patches"):
        extract_features(slide, empty, tiny(tiny_script), tmp_path / "e.h5", device="cpu")
    with pytest.raises(ModelError, match="at least 1"):
        extract_features(slide, grid, tiny(tiny_script), tmp_path / "e.h5", batch_size=0)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("workers", [3, 8])
def test_decoding_threads_do_not_change_the_rows(tmp_path, slide_and_grid, tiny_script, workers):
    slide, grid = slide_and_grid
    files = {}
    for n in (1, workers):  # 8 patches per decoding job with one thread, 2 or 1 with more
        files[n] = tmp_path / f"w{n}.h5"
        extract_features(
            slide, grid, tiny(tiny_script), files[n], device="cpu", batch_size=16, workers=n
        )
    np.testing.assert_array_equal(
        read_features(files[workers]).features, read_features(files[1]).features
    )


def test_default_batching_follows_the_device():
    assert default_batching(torch.device("cpu")) == (32, 4)
    batch, workers = default_batching(torch.device("cuda"))
    assert batch == 128 and 2 <= workers <= 12
