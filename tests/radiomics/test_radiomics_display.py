"""Qt-free display helpers of the radiology pane: window presets, ROI outlines, slices."""

from __future__ import annotations

import numpy as np
import pytest

from her2viewer.radiomics.display import (
    default_preset,
    largest_roi_slice,
    looks_like_ct,
    outline_segments,
    roi_slices,
    window_range,
)


def test_ct_window_presets():
    ct = np.array([-1000.0, 0.0, 1500.0])
    assert window_range("soft tissue", ct) == (-160.0, 240.0)  # W400 / L40
    assert window_range("lung", ct) == (-1350.0, 150.0)  # W1500 / L-600
    assert window_range("bone", ct) == (-700.0, 1300.0)  # W2000 / L300
    assert looks_like_ct(ct) and default_preset(ct) == "soft tissue"


def test_auto_window_for_mr():
    mr = np.arange(1001, dtype=float)
    assert window_range("auto", mr) == pytest.approx((5.0, 995.0))
    assert window_range("auto", np.full(10, 7.0)) == (7.0, 8.0)  # a flat volume still shows
    assert not looks_like_ct(mr) and default_preset(mr) == "auto"


def _edges(segments: np.ndarray) -> set:
    return {tuple(map(tuple, s)) for s in segments}


def test_outline_of_one_pixel_is_its_four_edges():
    mask = np.zeros((3, 4), bool)
    mask[1, 2] = True  # spans x 2..3, y 1..2
    assert _edges(outline_segments(mask)) == {
        ((2, 1), (3, 1)), ((2, 2), (3, 2)), ((2, 1), (2, 2)), ((3, 1), (3, 2)),
    }  # fmt: skip


def test_outline_of_an_l_shape_and_at_the_border():
    mask = np.zeros((3, 3), bool)
    mask[0, 0] = mask[1, 0] = mask[1, 1] = True  # perimeter 8 edges, shared ones removed
    segments = outline_segments(mask)
    assert len(segments) == 8 and len(_edges(segments)) == 8
    assert ((0, 0), (1, 0)) in _edges(segments)  # the array border closes the outline
    assert len(outline_segments(np.zeros((2, 2), bool))) == 0


def test_roi_slices():
    mask = np.zeros((5, 4, 4), bool)
    mask[1, :2, :2] = True
    mask[3, :, :] = True
    assert roi_slices(mask).tolist() == [1, 3]
    assert largest_roi_slice(mask) == 3
    assert largest_roi_slice(np.zeros((5, 2, 2), bool)) == 2
