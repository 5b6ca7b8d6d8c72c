"""Without the radiomics extra, radiomics says in one sentence how to install it."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from her2viewer.cli import main
from her2viewer.errors import RadiomicsError
from her2viewer.radiomics.features import extract_features
from her2viewer.radiomics.filters import wavelet_images
from her2viewer.radiomics.optional import INSTALL_HINT, missing_modules
from her2viewer.radiomics.params import read_params
from her2viewer.radiomics.volume import Volume, read_dicom_series

DATA = Path(__file__).resolve().parents[1] / "data" / "radiomics"


def _one_sentence(text: str) -> None:
    assert INSTALL_HINT in text and "\n" not in text


def test_everything_is_installed_here():
    assert missing_modules() == []


def test_missing_pywavelets(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "pywt", None)
    assert missing_modules() == ["pywt"]
    vol = Volume(np.zeros((4, 4, 4)), (1.0, 1.0, 1.0))
    with pytest.raises(RadiomicsError, match="wavelet filter") as info:
        list(wavelet_images(vol))
    _one_sentence(str(info.value))
    args = ["radiomics", "extract", str(DATA / "breast1_image.nrrd"),
            str(DATA / "breast1_label.nrrd"), "--filter", "wavelet"]  # fmt: skip
    assert main(args) == 2
    _one_sentence(capsys.readouterr().err.strip())


def test_missing_scikit_image(monkeypatch):
    monkeypatch.setitem(sys.modules, "skimage.measure", None)
    mask = np.zeros((4, 6, 6), np.uint8)
    mask[1:3, 2:4, 2:4] = 1
    vol = Volume(mask.astype(np.int16), (1.0, 1.0, 1.0))
    with pytest.raises(RadiomicsError, match="shape features") as info:
        extract_features(vol, Volume(mask, (1.0, 1.0, 1.0)))
    _one_sentence(str(info.value))


def test_missing_pydicom_and_yaml(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "pydicom", None)
    monkeypatch.setitem(sys.modules, "yaml", None)
    with pytest.raises(RadiomicsError, match="DICOM") as info:
        read_dicom_series(tmp_path)
    _one_sentence(str(info.value))
    params = tmp_path / "params.yaml"
    params.write_text("imageType: {Original: {}}\n")
    with pytest.raises(RadiomicsError, match="YAML") as info:
        read_params(params)
    _one_sentence(str(info.value))
