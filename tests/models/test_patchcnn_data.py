"""Tumor-enriched patch selection for IHC grading: mask rule, stain-density rule, region."""

from __future__ import annotations

import json

import numpy as np
import pytest

from her2viewer.errors import ModelError
from her2viewer.models.patch_data import (
    MIN_TUMOR_FRACTION,
    TumorRegion,
    region_fraction,
    slide_patches,
    stain_density,
    tumor_region,
)


@pytest.fixture(scope="module")
def ihc_slide(synthetic_cohort):
    return synthetic_cohort.parent / "case003" / "ihc.svs"


def test_region_fraction_maps_through_the_transform():
    mask = np.zeros((10, 10), bool)
    mask[:, 5:] = True  # right half of a 160 x 160 px frame, 16 px per mask px
    shift = np.array([[1.0, 0, 40], [0, 1, 0], [0, 0, 1]])  # slide x + 40 = mask-frame x
    region = TumorRegion(mask, 16.0, shift, "test")
    coords = np.array([[0, 0], [40, 0], [40, 80], [200, 0]])
    assert region_fraction(region, coords, 80).tolist() == [0.5, 1.0, 1.0, 0.0]


def test_tumor_region_of_a_synthetic_pair(synthetic_cohort, ihc_slide):
    truth = json.loads((ihc_slide.parent / "truth.json").read_text())
    ihc, he = tumor_region(ihc_slide), tumor_region(ihc_slide.parent / "he.svs")
    assert np.allclose(ihc.to_mask_frame, truth["transform_ihc_to_he"])
    assert np.allclose(he.to_mask_frame, np.eye(3)) and he.mask.any()
    assert tumor_region(synthetic_cohort) is None  # no truth.json beside labels.csv's folder


def test_tumor_mask_rule_keeps_only_tumor_patches(ihc_slide):
    tumor = slide_patches(ihc_slide, step=256)
    tissue = slide_patches(ihc_slide, step=256, tumor="none")
    region = tumor_region(ihc_slide)
    inside = region_fraction(region, tumor.coords, tumor.patch_size_level0)
    everywhere = region_fraction(region, tissue.coords, tissue.patch_size_level0)
    assert tumor.rule == "tumor mask" and tissue.rule == "all tissue"
    assert len(tumor.coords) >= 3 and len(tissue.coords) > len(tumor.coords)
    assert inside.min() >= MIN_TUMOR_FRACTION and everywhere.mean() < inside.mean()
    assert tumor.patches.shape == (len(tumor.coords), 512, 512, 3)


def test_stain_density_rule_prefers_tumor(ihc_slide):
    tissue = slide_patches(ihc_slide, tumor="none")
    dense = slide_patches(ihc_slide, tumor="stain")
    region = tumor_region(ihc_slide)
    chosen = {tuple(c) for c in dense.coords}
    dropped = np.array([tuple(c) not in chosen for c in tissue.coords])
    fraction = region_fraction(region, tissue.coords, tissue.patch_size_level0)
    assert dense.rule == "stain density" and 0 < len(chosen) < len(tissue.coords)
    assert fraction[~dropped].mean() > fraction[dropped].mean()
    assert stain_density(np.full((1, 64, 64, 3), 240, np.uint8))[0] < 0.01  # flat glass


def test_region_of_view_and_errors(ihc_slide, synthetic_cohort, tmp_path):
    whole = slide_patches(ihc_slide, tumor="none")
    x, y = whole.coords[0]
    size = whole.patch_size_level0
    view = slide_patches(ihc_slide, tumor="none", rect=(x + 1, y + 1, x + size - 1, y + 10))
    assert view.coords.tolist() == [[x, y]]
    with pytest.raises(ModelError, match="zoom in to at most 2"):
        slide_patches(ihc_slide, tumor="none", most=2)
    with pytest.raises(ModelError, match="Unknown tumor rule 'x'"):
        slide_patches(ihc_slide, tumor="x")
    with pytest.raises(ModelError, match="has no tumor mask"):
        slide_patches(tmp_path / "ihc.svs", tumor="mask")
    with pytest.raises(ModelError, match="No tissue patch .* in the view") as info:
        slide_patches(ihc_slide, tumor="none", rect=(0, 0, 10, 10))
    assert "\n" not in str(info.value)
