"""The overlay colormaps come from matplotlib's registry; masks default to Okabe-Ito."""

from __future__ import annotations

import matplotlib
import numpy as np
import pytest

from her2viewer.overlay.colormaps import COLORMAPS, MASK_COLORS, apply_colormap, colormap_lut
from her2viewer.overlay.layers import MaskLayer
from her2viewer.stats.style import PALETTE


def test_coolwarm_is_matplotlibs_to_the_byte():
    reference = matplotlib.colormaps["coolwarm"](np.linspace(0, 1, 256), bytes=True)[:, :3]
    assert np.array_equal(colormap_lut("coolwarm"), reference)


@pytest.mark.parametrize("name", ["coolwarm", "viridis", "magma", "inferno", "turbo", "RdBu"])
def test_each_named_map_exists_and_is_matplotlibs(name):
    assert name in COLORMAPS
    lut = colormap_lut(name)
    assert lut.shape == (256, 3) and lut.dtype == np.uint8 and not lut.flags.writeable
    reference = matplotlib.colormaps[name](np.linspace(0, 1, 256), bytes=True)[:, :3]
    assert np.array_equal(lut, reference)
    assert colormap_lut(name) is lut  # computed once


def test_scores_are_coloured_from_the_lut():
    rgba = apply_colormap(np.array([[0.0, 1.0]]), "RdBu")
    assert rgba[0, :, :3].tolist() == colormap_lut("RdBu")[[0, 255]].tolist()


def test_mask_default_is_okabe_ito():
    okabe_ito = {tuple(rgb) for rgb in PALETTE}
    assert set(MASK_COLORS.values()) <= okabe_ito and len(MASK_COLORS) >= 5
    layer = MaskLayer("m", labels=np.array([[0, 1], [2, 3]], np.uint8), downsample=1)
    assert all(layer.colors[label] in okabe_ito for label in (1, 2, 3))
