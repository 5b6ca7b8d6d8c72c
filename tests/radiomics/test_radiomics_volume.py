"""Volume reading and writing: NRRD and NIfTI round trips and bad files."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from her2viewer.errors import RadiomicsError
from her2viewer.radiomics.volume import Volume, load_volume, write_nifti, write_nrrd


@pytest.fixture
def volume():
    rng = np.random.default_rng(0)
    return Volume(rng.integers(-1000, 2000, (4, 5, 6)).astype(np.int16), (2.5, 0.7, 0.8), (1, 2, 3))


@pytest.mark.parametrize("compress", [True, False])
def test_nrrd_round_trip(tmp_path, volume, compress):
    path = write_nrrd(tmp_path / "v.nrrd", volume, compress=compress)
    back = load_volume(path)
    np.testing.assert_array_equal(back.array, volume.array)
    assert back.spacing == pytest.approx(volume.spacing)
    assert back.origin == pytest.approx(volume.origin)


@pytest.mark.parametrize("name", ["v.nii", "v.nii.gz"])
def test_nifti_round_trip(tmp_path, volume, name):
    back = load_volume(write_nifti(tmp_path / name, volume))
    np.testing.assert_array_equal(back.array, volume.array)
    assert back.spacing == pytest.approx(volume.spacing)


def test_nrrd_detached_header(tmp_path, volume):
    (tmp_path / "v.raw").write_bytes(volume.array.astype("<i2").tobytes())
    (tmp_path / "v.nhdr").write_text(
        "NRRD0004\ntype: short\ndimension: 3\nsizes: 6 5 4\nspacings: 0.8 0.7 2.5\n"
        "endian: little\nencoding: raw\ndata file: v.raw\n\n"
    )
    back = load_volume(tmp_path / "v.nhdr")
    np.testing.assert_array_equal(back.array, volume.array)
    assert back.spacing == pytest.approx((2.5, 0.7, 0.8))


def test_real_breast1_header():
    data = Path(__file__).resolve().parents[1] / "data" / "radiomics"
    image = load_volume(data / "breast1_image.nrrd")
    assert image.array.shape == (21, 120, 45)
    assert image.spacing == pytest.approx((2.1, 0.664062, 0.664062))


def test_missing_file(tmp_path):
    with pytest.raises(RadiomicsError, match="not found"):
        load_volume(tmp_path / "nope.nrrd")


def test_unknown_format(tmp_path):
    (tmp_path / "v.png").write_bytes(b"x")
    with pytest.raises(RadiomicsError, match="Unknown volume format"):
        load_volume(tmp_path / "v.png")


def test_truncated_nrrd(tmp_path, volume):
    path = write_nrrd(tmp_path / "v.nrrd", volume, compress=False)
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(RadiomicsError, match="shorter than the header"):
        load_volume(path)


def test_not_nifti(tmp_path):
    (tmp_path / "v.nii.gz").write_bytes(gzip.compress(b"\0" * 400))
    with pytest.raises(RadiomicsError, match="Cannot read volume"):
        load_volume(tmp_path / "v.nii.gz")


def test_dicom_series(tmp_path, volume, write_dicom_series):
    write_dicom_series(tmp_path / "ct", volume)
    back = load_volume(tmp_path / "ct")
    np.testing.assert_array_equal(back.array, volume.array)
    assert back.spacing == pytest.approx(volume.spacing)


def test_dicom_errors(tmp_path, volume, write_dicom_series):
    (tmp_path / "empty").mkdir()
    with pytest.raises(RadiomicsError, match="No DICOM image"):
        load_volume(tmp_path / "empty")
    write_dicom_series(tmp_path / "two", volume)
    write_dicom_series(tmp_path / "other", Volume(volume.array[:2], volume.spacing))
    for item in (tmp_path / "other").glob("*.dcm"):
        item.rename(tmp_path / "two" / f"x_{item.name}")
    with pytest.raises(RadiomicsError, match="2 DICOM series"):
        load_volume(tmp_path / "two")
