"""Colour deconvolution, Macenko estimation/normalisation and DAB measures."""

from __future__ import annotations

import numpy as np
import pytest
import skimage.color
import skimage.data

from her2viewer.errors import StainError
from her2viewer.stain import (
    HDAB,
    HE,
    DabThresholds,
    MacenkoNormalizer,
    combine_stains,
    dab_measures,
    estimate_stain_matrix,
    h_score,
    merge_measures,
    separate_stains,
    stain_matrix,
    tile_means,
)
from her2viewer.stain.macenko import _angle_deg


def _mix(first, second, size=128, seed=0, second_scale=1.0):
    """Beer-Lambert image of two stains with random amounts (base-10 OD)."""
    rng = np.random.default_rng(seed)
    amounts = rng.uniform(0, 1.0, (size, size, 2)) * np.array([0.8, 0.6 * second_scale])
    amounts[: size // 4] = 0  # glass
    matrix = stain_matrix(first, second)
    stains = np.concatenate([amounts, np.zeros((size, size, 1))], axis=-1)
    return combine_stains(stains, matrix), matrix


def test_deconvolution_is_invertible():
    rgb = np.random.default_rng(1).integers(1, 256, (64, 64, 3), dtype=np.uint8)
    for matrix in (HDAB, HE):
        back = combine_stains(separate_stains(rgb, matrix), matrix)
        assert np.abs(back.astype(int) - rgb.astype(int)).max() <= 1


def test_dab_separated_on_real_ihc():
    """skimage's real IHC image: brown regions high in DAB, blue nuclei low."""
    rgb = skimage.data.immunohistochemistry()
    ours = separate_stains(rgb, HDAB)
    reference = skimage.color.rgb2hed(rgb)
    brown = reference[..., 2] > np.percentile(reference[..., 2], 90)
    blue = (reference[..., 0] > np.percentile(reference[..., 0], 90)) & ~brown
    assert ours[..., 1][brown].mean() > 3 * max(ours[..., 1][blue].mean(), 0.01)
    assert np.corrcoef(ours[..., 1].ravel(), reference[..., 2].ravel())[0, 1] > 0.9


def test_macenko_recovers_known_vectors():
    first, second = [0.55, 0.75, 0.37], [0.15, 0.62, 0.77]
    rgb, truth = _mix(first, second)
    estimate = estimate_stain_matrix(rgb, HDAB)
    assert _angle_deg(estimate[0], truth[0]) < 3
    assert _angle_deg(estimate[1], truth[1]) < 3


def test_macenko_without_dab_keeps_reference_dab_and_finds_hematoxylin():
    counterstain = [0.60, 0.65, 0.47]  # 10 degrees from the reference hematoxylin
    rgb, truth = _mix(counterstain, HDAB[1], second_scale=0.0)
    estimate = estimate_stain_matrix(rgb, HDAB, max_deviation=15)
    assert _angle_deg(estimate[1], HDAB[1]) < 1e-6
    assert _angle_deg(estimate[0], truth[0]) < 3


def test_macenko_normaliser_moves_towards_reference():
    reference, _ = _mix(HDAB[0], HDAB[1], seed=2)
    source, _ = _mix(HDAB[0], HDAB[1], seed=2, second_scale=0.5)
    normalizer = MacenkoNormalizer.fit(reference)
    out = normalizer(source)
    before = np.abs(source.astype(float) - reference).mean()
    assert np.abs(out.astype(float) - reference).mean() < 0.5 * before
    again = MacenkoNormalizer.from_dict(normalizer.to_dict())
    assert np.array_equal(again(source), out)


def test_dab_measures_and_h_score():
    dab = np.array([0.0, 0.1, 0.25, 0.45, 0.7, 0.9, 0.3, 0.05])
    m = dab_measures(dab)
    assert (m.fraction_1plus, m.fraction_2plus, m.fraction_3plus) == (0.25, 0.125, 0.25)
    assert m.positive_fraction == pytest.approx(0.625)
    assert m.h_score == pytest.approx(h_score(0.25, 0.125, 0.25)) == pytest.approx(125.0)
    merged = merge_measures([dab_measures(dab[:3]), dab_measures(dab[3:])])
    assert merged.h_score == pytest.approx(m.h_score)
    assert merged.mean_od == pytest.approx(m.mean_od)
    strict = dab_measures(dab, thresholds=DabThresholds(0.5, 0.8, 0.95))
    assert strict.positive_fraction == pytest.approx(0.25)


def test_tile_means():
    dab = np.zeros((10, 10), np.float32)
    dab[:5, :5] = 1.0
    means = tile_means(dab, 5)
    assert means.tolist() == [[1.0, 0.0], [0.0, 0.0]]
    mask = np.zeros_like(dab, bool)
    assert np.isnan(tile_means(dab, 5, mask)).all()


@pytest.mark.parametrize(
    "call",
    [
        lambda: separate_stains(np.zeros((4, 4), np.uint8)),
        lambda: stain_matrix([1, 0, 0], [2, 0, 0]),
        lambda: stain_matrix([0, 0, 0], [1, 0, 0]),
        lambda: estimate_stain_matrix(np.full((32, 32, 3), 255, np.uint8)),
        lambda: DabThresholds(0.4, 0.2, 0.6),
        lambda: dab_measures(np.zeros(4), np.ones(3, bool)),
        lambda: MacenkoNormalizer.from_dict({"matrix": 1}),
    ],
)
def test_bad_inputs_raise_one_line_errors(call):
    with pytest.raises(StainError) as info:
        call()
    assert "\n" not in str(info.value)
