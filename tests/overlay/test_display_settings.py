"""Display settings (Qt-free): lookup tables, stain views, auto levels, image type guess."""

import numpy as np
import pytest

from her2viewer.overlay.display import (
    DisplaySettings,
    Levels,
    apply_display,
    auto_levels,
    guess_image_type,
    stain_view,
)
from her2viewer.slide import open_slide
from her2viewer.stain import HDAB, combine_stains


def test_levels_lut_maps_the_range_and_bends_with_gamma():
    lut = Levels(50, 150).lut()
    assert lut[50] == 0 and lut[150] == 255 and lut[100] == 128 and lut[0] == 0
    assert Levels(gamma=2.0).lut()[64] > 64  # gamma above 1 brightens the mid-tones
    levels = Levels.from_brightness_contrast(0.2, 2.0, 1.5)
    assert levels.brightness == pytest.approx(0.2) and levels.contrast == pytest.approx(2.0)


def test_per_channel_levels_touch_only_their_channel():
    rgb = np.full((4, 4, 3), 100, np.uint8)
    shown = apply_display(rgb, DisplaySettings().with_levels(Levels(0, 200), channel=1))
    assert shown[0, 0].tolist() == [100, 128, 100]
    assert DisplaySettings().neutral and apply_display(rgb, DisplaySettings()) is rgb


def test_stain_view_keeps_one_stain_and_drops_the_other():
    amounts = np.zeros((2, 2, 3), np.float32)
    amounts[0, 0, 0] = 0.6  # hematoxylin only
    amounts[0, 1, 1] = 0.6  # DAB only
    rgb = combine_stains(amounts, HDAB)
    hema = stain_view(rgb, HDAB, 0).astype(int)
    assert np.abs(hema[0, 0] - rgb[0, 0]).max() <= 3  # the hematoxylin pixel as it was
    assert hema[0, 1].min() >= 245  # the DAB pixel becomes white
    grey = stain_view(rgb, HDAB, 1, grey=True)
    assert grey[0, 1, 0] == grey[0, 1, 1] == grey[0, 1, 2] < 200


def test_auto_levels_stretch_percentiles():
    rng = np.random.default_rng(0)
    dim = rng.integers(0, 30, (200, 200, 3)).astype(np.uint8)
    dim[..., 2] //= 3
    linked, per_channel = auto_levels(dim, False), auto_levels(dim, True)
    assert linked[0] == linked[2] and linked[0].white <= 30
    assert per_channel[2].white < per_channel[0].white


def test_image_type_guess(synthetic_case):
    for name, expected in (("he.svs", "brightfield-he"), ("ihc.svs", "brightfield-hdab")):
        with open_slide(synthetic_case / name) as slide:
            overview = slide.thumbnail(1024)
        assert guess_image_type(overview) == expected
        assert guess_image_type(255 - overview) == "fluorescence"  # dark background
