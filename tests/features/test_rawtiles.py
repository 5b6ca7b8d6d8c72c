"""Raw JPEG tiles decoded in batches give OpenSlide's pixels and features (issue 22).

Tolerance: on the CPU both paths run libjpeg(-turbo)'s integer IDCT and the same
chroma upsampling, so pixels are expected equal; the tests allow
``DECODER_TOLERANCE`` (2 grey levels) because builds of libjpeg-turbo (OpenSlide's
and torchvision's) and nvJPEG may round the IDCT and upsampling differently.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import tifffile
import torch
from torch import nn

from her2viewer.cli import main
from her2viewer.features.encoders import build_encoder
from her2viewer.features.engine import extract_features
from her2viewer.features.rawtiles import (
    DECODER_TOLERANCE,
    RawPatchReader,
    RawTilesUnavailable,
    patch_reader,
    raw_level,
)
from her2viewer.features.store import read_features
from her2viewer.slide import open_slide
from her2viewer.tissue import PatchGrid, make_patch_grid, segment_tissue

CPU = torch.device("cpu")
#: torchvision 0.29 deprecates its image codecs for TorchCodec's (no batched nvJPEG there yet).
pytestmark = pytest.mark.filterwarnings("ignore:The image decoding:DeprecationWarning")


def _grid(slide, level: int, side: int, step: int, offset: int = 0) -> PatchGrid:
    """Patches of ``side`` px every ``step`` px of ``level``, from ``offset``, over all of it."""
    info = slide.info.levels[level]
    xs = np.arange(offset, info.width, step)
    ys = np.arange(offset, info.height, step)
    corners = np.array([(x, y) for y in ys for x in xs], np.int64)
    ds = info.downsample
    return PatchGrid(
        coords=np.round(corners * ds).astype(np.int64),
        patch_level=level,
        patch_size=side,
        patch_size_level0=round(side * ds),
        target_size=side,
        magnification=None,
        mpp=None,
        level_dim=(info.width, info.height),
        downsample=ds,
        name="t",
    )


def _max_diff(slide, grid: PatchGrid) -> int:
    """Largest pixel difference between the raw path and OpenSlide over the whole grid."""
    raw = RawPatchReader(slide, grid, CPU).read(range(len(grid))).numpy().astype(int)
    reference = np.stack([grid.read_patch(slide, i) for i in range(len(grid))]).astype(int)
    return int(np.abs(raw - reference).max())


def _every_tile(slide) -> list[PatchGrid]:
    """Per level: one patch per stored tile, and patches straddling tiles and the edges."""
    grids = []
    for level in range(slide.info.level_count):
        lv = raw_level(slide, level)
        grids.append(_grid(slide, level, lv.tile_width, lv.tile_width))
        grids.append(_grid(slide, level, 300, 211, offset=97))
    return grids


def test_every_tile_of_the_real_aperio_slide_matches_openslide(cmu_svs):
    with open_slide(cmu_svs) as slide:
        lv = raw_level(slide, 0)
        assert lv.prefix.startswith(b"\xff\xd8\xff\xdb")  # Aperio's shared JPEGTables spliced
        assert b"Adobe" in lv.prefix  # stored as RGB, not YCbCr
        for grid in _every_tile(slide):
            assert _max_diff(slide, grid) <= DECODER_TOLERANCE


def test_every_tile_of_the_synthetic_slides_matches_openslide(synthetic_case):
    for name in ("he.svs", "ihc.svs"):
        with open_slide(synthetic_case / name) as slide:
            with tifffile.TiffFile(synthetic_case / name) as tif:
                assert tif.pages[0].photometric == 6  # YCbCr JPEG, one stream per tile
            assert slide.info.level_count > 1
            for grid in _every_tile(slide):
                assert _max_diff(slide, grid) <= DECODER_TOLERANCE


def _gradient_tiff(path, **kwargs):
    """A 520 x 300 tiled JPEG TIFF of colour ramps."""
    image = np.zeros((300, 520, 3), np.uint8)
    image[..., 0], image[..., 1] = np.arange(520)[None] % 256, 120
    image[..., 2] = np.arange(300)[:, None] % 256
    tifffile.imwrite(path, image, tile=(256, 256), compression="jpeg", photometric="rgb", **kwargs)
    return path


def test_rgb_jpeg_tiles_of_a_generic_tiff_match_openslide(tmp_path):
    path = _gradient_tiff(tmp_path / "rgb.tif", compressionargs={"outcolorspace": "rgb"})
    with open_slide(path) as slide:
        assert _max_diff(slide, _grid(slide, 0, 100, 90, offset=3)) <= DECODER_TOLERANCE


def test_resized_patches_match_the_grids_reading(synthetic_case):
    with open_slide(synthetic_case / "he.svs") as slide:
        grid = dataclasses.replace(_grid(slide, 0, 512, 600, offset=5), target_size=256)
        assert _max_diff(slide, grid) <= DECODER_TOLERANCE


def test_cuda_paths_tensor_cutting_gives_the_same_patches(synthetic_case):
    """The torch code a CUDA device runs (paste into tensors, area resize), here on the CPU."""
    with open_slide(synthetic_case / "he.svs") as slide:
        for grid in (
            _grid(slide, 1, 300, 211, offset=97),
            dataclasses.replace(_grid(slide, 0, 512, 600, offset=5), target_size=256),
        ):
            reader = RawPatchReader(slide, grid, CPU)
            reader._numpy = False
            tensors = reader.read(range(len(grid))).numpy().astype(int)
            reference = np.stack([grid.read_patch(slide, i) for i in range(len(grid))])
            assert np.abs(tensors - reference).max() <= 1  # cv2's area rounding vs torch's


def test_features_from_raw_tiles_equal_openslides(tmp_path, synthetic_case):
    """Within check_cuda.py's tolerance (relative error < 2e-2); equal pixels give equal rows."""
    encoder = build_encoder("resnet50_trunc", random_seed=0)
    with open_slide(synthetic_case / "he.svs") as slide:
        grid = make_patch_grid(slide, segment_tissue(slide), magnification=20, patch_size=256)
        grid = dataclasses.replace(grid, coords=grid.coords[:24])
        runs = {
            decode: extract_features(
                slide, grid, encoder, tmp_path / f"{decode}.h5", device="cpu", decode=decode
            )
            for decode in ("openslide", "raw")
        }
    assert runs["openslide"].decode == "openslide" and runs["raw"].decode == "raw-cpu"
    cpu, raw = (read_features(tmp_path / f"{d}.h5").features for d in ("openslide", "raw"))
    assert np.linalg.norm(raw - cpu) / np.linalg.norm(cpu) < 2e-2
    np.testing.assert_allclose(raw, cpu, rtol=0, atol=1e-5)


def test_other_layouts_fall_back_to_openslide_saying_why(tmp_path, synthetic_case):
    lzw = tmp_path / "lzw.tif"
    image = np.full((600, 700, 3), 200, np.uint8)
    tifffile.imwrite(lzw, image, tile=(256, 256), compression="lzw", photometric="rgb")
    with open_slide(lzw) as slide:
        reader, path = patch_reader(slide, _grid(slide, 0, 64, 64), CPU, "raw")
        assert (
            reader is None
            and path == "openslide (raw tiles unavailable: its tiles are LZW, not JPEG)"
        )
    jfif = _gradient_tiff(tmp_path / "jfif.tif")  # YCbCr streams, then tagged RGB as OpenSlide
    with tifffile.TiffFile(jfif, mode="r+") as tif:  # decodes them: keep its reading
        tif.pages[0].tags["PhotometricInterpretation"].overwrite(2)
    with open_slide(jfif) as slide:
        assert (
            "RGB tiles carry JFIF markers"
            in patch_reader(slide, _grid(slide, 0, 64, 64), CPU, "raw")[1]
        )
    with open_slide(synthetic_case / "he.svs") as slide:
        assert patch_reader(slide, _grid(slide, 0, 64, 64), CPU, "openslide") == (None, "openslide")
        between = dataclasses.replace(_grid(slide, 1, 64, 64), coords=np.array([[2, 0]]))
        with pytest.raises(RawTilesUnavailable, match="between pixels of level 1"):
            RawPatchReader(slide, between, CPU)


def test_extract_verb_says_which_decoder_ran(tmp_path, synthetic_case, capsys):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    script = tmp_path / "tiny.pt"
    torch.jit.script(net.eval()).save(str(script))
    args = ["extract", str(synthetic_case / "he.svs"), "--encoder", f"torchscript:{script}"]
    args += ["--mag", "5", "--patch-size", "32", "--device", "cpu", "--json", "--decode", "raw"]
    assert main([*args, "-o", str(tmp_path / "raw")]) == 0
    assert json.loads(capsys.readouterr().out)[0]["decode"] == "raw-cpu"
    assert main([*args[:-2], "-o", str(tmp_path / "openslide")]) == 0
    assert json.loads(capsys.readouterr().out)[0]["decode"] == "openslide"
    rows = [
        read_features(tmp_path / d / "h5_files" / "he.h5").features for d in ("raw", "openslide")
    ]
    np.testing.assert_array_equal(*rows)
