"""Radiomic features against PyRadiomics' own published baseline for breast1, and bad inputs."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from her2viewer.errors import RadiomicsError
from her2viewer.radiomics.features import (
    RadiomicsSettings,
    discretize,
    extract_features,
)
from her2viewer.radiomics.volume import Volume, load_volume

DATA = Path(__file__).resolve().parents[1] / "data" / "radiomics"


def _baseline(case: str = "breast1") -> tuple[dict[str, float], str]:
    values, settings = {}, ""
    for path in sorted((DATA / "baseline").glob("baseline_*.csv")):
        if "shape2D" in path.name:
            continue
        rows = list(csv.reader(path.open()))
        col = rows[0].index(case)
        for row in rows:
            if row[0].startswith("original_"):
                values[row[0]] = float(row[col])
            if row[0] == "diagnostics_Configuration_Settings":
                settings = row[col]
    return values, settings


@pytest.fixture(scope="module")
def breast1():
    return load_volume(DATA / "breast1_image.nrrd"), load_volume(DATA / "breast1_label.nrrd")


def test_breast1_matches_pyradiomics_baseline(breast1):
    baseline, settings = _baseline()
    # the baseline was made with binWidth 25, label 1 and voxelArrayShift 2000
    assert "'binWidth': 25" in settings and "'voxelArrayShift': 2000" in settings
    features = extract_features(*breast1, RadiomicsSettings(voxel_array_shift=2000))
    assert len(baseline) == 107
    assert set(features) == set(baseline)
    for name, expected in baseline.items():
        assert features[name] == pytest.approx(expected, rel=1e-4, abs=1e-12), name


def test_feature_classes_subset(breast1):
    features = extract_features(*breast1, RadiomicsSettings(classes=("firstorder",)))
    assert all(k.startswith("original_firstorder_") for k in features)
    # without the shift Energy is the plain sum of squares
    image, mask = breast1
    values = image.array[mask.array == 1].astype(float)
    assert features["original_firstorder_Energy"] == pytest.approx(np.sum(values**2))


def test_discretize_fixed_bin_width():
    levels = discretize(np.array([102.0, 124.9, 125.0, 162.0]), 25)
    assert levels.tolist() == [1, 1, 2, 3]
    assert discretize(np.array([50.0, 50.0]), 25).tolist() == [1, 1]


def test_shape_of_a_box_is_exact():
    mask = np.zeros((8, 10, 12), dtype=np.uint8)
    mask[2:6, 3:7, 4:10] = 1
    image = Volume(np.full(mask.shape, 100, dtype=np.int16), (2.0, 1.0, 0.5))
    features = extract_features(
        image, Volume(mask, (2.0, 1.0, 0.5)), RadiomicsSettings(classes=("shape",))
    )
    assert features["original_shape_VoxelVolume"] == pytest.approx(4 * 2.0 * 4 * 1.0 * 6 * 0.5)
    assert features["original_shape_MeshVolume"] < features["original_shape_VoxelVolume"]
    assert 0 < features["original_shape_Sphericity"] <= 1


def test_flat_region_gives_finite_texture():
    mask = np.zeros((5, 6, 7), dtype=np.uint8)
    mask[1:4, 1:5, 1:6] = 1
    image = Volume(np.full(mask.shape, 70, dtype=np.int16), (1.0, 1.0, 1.0))
    features = extract_features(image, Volume(mask, (1.0, 1.0, 1.0)))
    assert all(np.isfinite(v) for v in features.values())
    assert features["original_glcm_MCC"] == 1.0
    assert features["original_ngtdm_Coarseness"] == 1e6


def test_shape_mismatch_is_one_line_error(breast1):
    image, _ = breast1
    bad = Volume(np.ones((3, 4, 5), dtype=np.uint8), image.spacing)
    with pytest.raises(RadiomicsError, match="does not match image shape") as info:
        extract_features(image, bad)
    assert "\n" not in str(info.value)


def test_empty_mask_is_one_line_error(breast1):
    image, mask = breast1
    empty = Volume(np.zeros_like(mask.array), mask.spacing)
    with pytest.raises(RadiomicsError, match="no voxel with label 1"):
        extract_features(image, empty)


def test_unknown_feature_class(breast1):
    with pytest.raises(RadiomicsError, match="Unknown feature class 'wavelet'"):
        extract_features(*breast1, RadiomicsSettings(classes=("wavelet",)))
