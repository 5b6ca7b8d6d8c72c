"""HER2Net tiling, padding, filters and the P formula on hand-made slides and tiles."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import torch
from torch import nn

from her2viewer.analysis.her2net import Her2NetOptions, Her2NetResult, predict_slide
from her2viewer.errors import ModelError
from her2viewer.jobs import Cancelled, JobContext
from her2viewer.models.her2net.ensemble import IntegratedClassifier
from her2viewer.models.her2net.model import Her2NetModel
from her2viewer.models.her2net.predict import high_expression_percent, is_tumor_tile
from her2viewer.slide import open_slide
from her2viewer.tissue.tiles import is_background, read_tile, tile_layout, tile_saturation

PINK = (230, 150, 200)  # saturated tissue, not tumor
PURPLE = (90, 40, 140)  # "tumor"
DARK = (60, 20, 90)  # "strong tumor"


def _write_tiff(path, image, mpp=0.5):
    ppcm = 1e4 / mpp
    tifffile.imwrite(path, image, resolution=(ppcm, ppcm), resolutionunit="CENTIMETER")
    return path


@pytest.fixture
def gradient_slide(tmp_path):
    """A 700 x 600 image at 0.5 um/px (20x) with a distinct value at every pixel."""
    y, x = np.mgrid[0:600, 0:700]
    image = np.stack([x % 256, y % 256, (x // 256) * 60 + (y // 256) * 20], -1).astype(np.uint8)
    return _write_tiff(tmp_path / "gradient.tif", image), image


def test_layout_covers_slide_without_overlap(gradient_slide):
    path, _ = gradient_slide
    with open_slide(path) as slide:
        layout = tile_layout(slide, 20.0)
        assert layout.tile_size0 == 512 and layout.grid_shape == (2, 2)
        assert layout.coords.tolist() == [[0, 0], [512, 0], [0, 512], [512, 512]]
        half = tile_layout(slide, 10.0, 512, 64)
        assert half.tile_size0 == 1024 and len(half.coords) == 1 and half.mask_downsample == 16


def test_edge_tiles_are_padded_white_not_resized(gradient_slide):
    path, image = gradient_slide
    with open_slide(path) as slide:
        layout = tile_layout(slide, 20.0)
        corner = read_tile(slide, layout, 3)
    assert corner.shape == (512, 512, 3)
    np.testing.assert_array_equal(corner[:88, :188], image[512:600, 512:700])
    assert (corner[88:] == 255).all() and (corner[:, 188:] == 255).all()


def test_reduced_tiles_scale_the_inside_part_only(gradient_slide):
    path, _ = gradient_slide
    with open_slide(path) as slide:
        layout = tile_layout(slide, 20.0, 512, 64)
        corner = read_tile(slide, layout, 3)
    assert corner.shape == (64, 64, 3)
    inside = round(188 * 64 / 512), round(88 * 64 / 512)
    assert (corner[inside[1] :] == 255).all() and (corner[:, inside[0] :] == 255).all()
    assert (corner[: inside[1] - 1, : inside[0] - 1] != 255).any()


def test_background_filter_uses_mean_saturation():
    white = np.full((32, 32, 3), 255, np.uint8)
    assert tile_saturation(white) == 0 and is_background(white)
    grey = np.full((32, 32, 3), 128, np.uint8)
    assert is_background(grey)
    tissue = white.copy()
    tissue[:, :8] = PURPLE  # a quarter of strongly saturated pixels
    assert tile_saturation(tissue) > 10 and not is_background(tissue)
    faint = white.copy()
    faint[:1, :4] = PURPLE  # 4 saturated pixels of 1024: mean saturation under 10
    assert is_background(faint)


def test_tumor_filter_is_strictly_above_ten_percent():
    tumor = np.zeros((10, 10), bool)
    tumor.flat[:10] = True
    assert not is_tumor_tile(tumor)
    tumor.flat[10] = True
    assert is_tumor_tile(tumor)


def test_p_formula_on_constructed_tiles():
    # strong tiles: 100 and 50 tumor px; weak tiles: 300 and 550 -> P = 150 / 1000
    assert high_expression_percent([100, 300, 50, 550], [True, False, True, False]) == 15.0
    assert high_expression_percent([], []) == 0.0
    assert high_expression_percent([10, 20], [False, False]) == 0.0
    with pytest.raises(ModelError):
        high_expression_percent([1, 2], [True])


class _ColorSegmenter(nn.Module):
    """Tumor where the normalised red channel is low (purple/dark pixels)."""

    def forward(self, x):
        tumor = (x[:, :1] < 0.0).float()
        return torch.cat([1 - tumor, tumor], 1) * 10


class _DarkClassifier(nn.Module):
    """Strong when the tile has dark pixels (normalised red below -1)."""

    def forward(self, x):
        dark = (x[:, 0].amin((1, 2)) < -1.0).float()[:, None]
        return torch.cat([1 - dark, dark], 1) * 10


def _toy_model(size: int) -> Her2NetModel:
    linear = IntegratedClassifier(
        "lr", {"type": "linear"}, {"coef": np.full(5, 4.0), "intercept": np.array([-10.0])}
    )
    return Her2NetModel(
        {"magnification": 20.0, "tile_size": size, "input_size": size, "name": "toy"},
        _ColorSegmenter().eval(),
        [_DarkClassifier().eval() for _ in range(5)],
        linear,
        torch.device("cpu"),
    )


def test_prediction_on_constructed_slide(tmp_path):
    """Tile 0 white (dropped), 1 mostly stroma (not classified), 2 strong, 3 weak."""
    size = 64
    image = np.full((2 * size, 2 * size, 3), 255, np.uint8)
    image[:size, size:] = PINK
    image[:4, size : size + 32] = PURPLE  # 128 tumor px = 3% of the tile
    image[size:, :size] = PINK
    image[size:, : size // 2] = DARK  # strong tile: 2048 tumor px
    image[size:, size:] = PINK
    image[size:, size:] = PURPLE  # weak tile: 4096 tumor px
    path = _write_tiff(tmp_path / "toy.tif", image)
    with open_slide(path) as slide:
        result = predict_slide(slide, _toy_model(size), Her2NetOptions(batch_size=3))
    assert len(result.tiles) == 3  # the white tile is background
    assert [t.classified for t in result.tiles] == [False, True, True]
    assert [t.strong for t in result.tiles] == [None, True, False]
    assert result.tumor_area_px == 2048 + 4096
    assert result.strong_area_px == 2048
    assert result.high_expression_percent == pytest.approx(100 * 2048 / 6144)
    assert result.her2_status == "positive"
    assert result.strong_mask.sum() == 2048 and result.tumor_mask.sum() == 128 + 2048 + 4096
    layers = result.layers()
    assert [layer.name for layer in layers] == ["HER2Net tumor", "HER2Net high expression"]
    assert layers[1].colors[1] == (140, 80, 20)
    back = Her2NetResult.load(result.save(tmp_path / "out"))
    assert back.summary()["high_expression_percent"] == result.high_expression_percent
    assert [t.strong for t in back.tiles] == [None, True, False]
    np.testing.assert_array_equal(back.strong_mask, result.strong_mask)
    with open_slide(path) as slide:
        strict = predict_slide(slide, _toy_model(size), Her2NetOptions(positive_percent=40.0))
    assert strict.her2_status == "negative"


def test_prediction_stops_when_cancelled(gradient_slide):
    path, _ = gradient_slide
    context = JobContext()
    context.token.cancel()
    with open_slide(path) as slide, pytest.raises(Cancelled):
        predict_slide(slide, _toy_model(64), context=context)
