"""The overlay exporters of overlay/export.py: images by suffix, blending, one-sentence errors."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from her2viewer.errors import OutputError
from her2viewer.overlay.export import blend_layer, write_image
from her2viewer.overlay.layers import MaskLayer
from tests.reliability.conftest import fill_disk


def test_an_rgb_image_is_written_in_the_format_of_its_suffix(tmp_path):
    image = np.zeros((8, 12, 3), np.uint8)
    image[..., 0] = 200  # red
    for suffix in (".png", ".tif", ".bmp"):
        path = write_image(tmp_path / f"a{suffix}", image)
        read = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        assert read.shape == (8, 12, 3) and (read[..., 0] == 200).all(), suffix
    grey = write_image(tmp_path / "mask.png", np.full((5, 5), 255, np.uint8))
    assert cv2.imread(str(grey), cv2.IMREAD_UNCHANGED).shape == (5, 5)
    named = write_image(tmp_path / "map", image, ".png")  # a name without a suffix, as PNG
    assert named.read_bytes().startswith(b"\x89PNG")


def test_an_unknown_format_is_one_sentence_and_writes_nothing(tmp_path):
    with pytest.raises(OutputError, match=r"cannot write .*a\.xyz: the image could not be encoded"):
        write_image(tmp_path / "a.xyz", np.zeros((4, 4, 3), np.uint8))
    assert list(tmp_path.iterdir()) == []


def _noise() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 255, (300, 300, 3), dtype=np.uint8)


def test_a_full_disk_leaves_no_image(tiny_disk):
    disk = tiny_disk(64)
    fill_disk(disk)
    with pytest.raises(OutputError, match="disk is full"):
        write_image(disk / "big.png", _noise())
    assert [p.name for p in disk.iterdir()] == [".filler"]


def test_blend_paints_the_layer_over_the_level_by_opacity():
    base = np.full((10, 10, 3), 100, np.uint8)
    labels = np.zeros((5, 5), np.int32)
    labels[:, 3:] = 1  # the right half, at 2 level-0 px per label
    layer = MaskLayer("m", labels=labels, downsample=2.0, colors={1: (0, 0, 255)})
    assert (blend_layer(base, layer, 1.0, 0.0) == base).all()
    full = blend_layer(base, layer, 1.0, 1.0)
    assert (full[:, :5] == 100).all()
    assert full[:, 7:].reshape(-1, 3).tolist() == [[0, 0, 255]] * 30
    half = blend_layer(base, layer, 1.0, 0.5)
    assert half[0, 9].tolist() == [50, 50, 178]
