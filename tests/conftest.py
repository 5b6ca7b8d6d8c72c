"""Shared fixtures: a small synthetic cohort, the real SVS, an isolated cache.

Real files the tests read live in ``tests/data/`` (sources and licences in its README); no test
reads a folder outside the project.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

#: Real test files committed with the project (see tests/data/README.md).
TEST_DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture(scope="session", autouse=True)
def isolated_cache(tmp_path_factory):
    """Point the user cache at a temporary folder for the whole test session."""
    path = tmp_path_factory.mktemp("cache")
    previous = os.environ.get("HER2VIEWER_CACHE")
    os.environ["HER2VIEWER_CACHE"] = str(path)
    yield path
    if previous is None:
        os.environ.pop("HER2VIEWER_CACHE", None)
    else:
        os.environ["HER2VIEWER_CACHE"] = previous


@pytest.fixture(autouse=True)
def isolated_data(tmp_path_factory, monkeypatch):
    """Give every test its own user data folder (annotation stores, sessions, slide settings).

    Per test, not per session: a store or a saved session left by one test must never show up
    in another test that opens the same synthetic slide.
    """
    path = tmp_path_factory.mktemp("data")
    monkeypatch.setenv("HER2VIEWER_DATA", str(path))
    return path


@pytest.fixture(scope="session")
def cmu_svs() -> Path:
    """The real Aperio SVS from OpenSlide's test data (CC0)."""
    path = TEST_DATA / "cmu-1-small-region.svs"
    assert path.exists(), f"real test slide missing: {path}"
    return path


@pytest.fixture(scope="session")
def synthetic_cohort(tmp_path_factory) -> Path:
    """Four small synthetic cases (one per IHC score), seed 0; returns labels.csv."""
    from her2viewer.slide.synthetic import write_cohort

    return write_cohort(tmp_path_factory.mktemp("cohort"), n_cases=4, seed=0, size=(3000, 2400))


@pytest.fixture(scope="session")
def synthetic_case(synthetic_cohort) -> Path:
    """The folder of the first case of the synthetic cohort."""
    return synthetic_cohort.parent / "case000"


@pytest.fixture(scope="session")
def ihc_cohort(tmp_path_factory) -> Path:
    """Eight small synthetic paired cases (two per IHC score), seed 11; returns labels.csv."""
    from her2viewer.slide.synthetic import write_cohort

    out = tmp_path_factory.mktemp("ihc_cohort")
    return write_cohort(out, n_cases=8, seed=11, size=(3000, 2400))


@pytest.fixture()
def window_factory(qtbot, tmp_path):
    """Make main windows one after the other, as the app's starts are: one small tile
    loader and one settings file (the same user data) for all; ``make((w, h))`` shows
    one. They are closed, and the loader shut down, at the end of the test."""
    from PySide6.QtCore import QSettings

    from her2viewer.gui.mainwindow import MainWindow
    from her2viewer.gui.tiles import TileCache, TileLoader

    loader = TileLoader(TileCache(64), workers=1)
    windows = []

    def make(size: tuple[int, int] = (900, 600)):
        settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
        window = MainWindow(loader, settings)
        qtbot.addWidget(window)
        window.resize(*size)
        window.show()
        windows.append(window)
        return window

    yield make
    for window in windows:
        window.close()
    loader.shutdown()


@pytest.fixture()
def panel_window(window_factory):
    """A main window with a small private tile cache, for the analysis-panel tests."""
    return window_factory()


#: Features of the small radiomics model: original, and one that needs the wavelet filter.
RADIOMICS_MODEL_FEATURES = [
    "original_firstorder_Mean",
    "original_firstorder_Variance",
    "original_glcm_Contrast",
    "wavelet-LLH_firstorder_Mean",
]


@pytest.fixture(scope="session")
def radiomics_model(tmp_path_factory) -> Path:
    """A radiomics model JSON trained on a synthetic feature table (positives: higher mean)."""
    import csv

    import numpy as np

    from her2viewer.radiomics.model import read_feature_table, save_models, train_models

    folder = tmp_path_factory.mktemp("radiomics_model")
    rng = np.random.default_rng(0)
    table = folder / "features.csv"
    with table.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["case_id", "label", *RADIOMICS_MODEL_FEATURES])
        for i in range(30):
            positive = i % 2
            values = [100 + 40 * positive, 300, 10, 2] + rng.normal(0, [15, 50, 3, 1])
            writer.writerow([f"c{i}", "positive" if positive else "negative", *values])
    data = read_feature_table(table)
    fitted, report = train_models(data, folds=3)
    return save_models(folder / "model.json", fitted, data, report)


@pytest.fixture(scope="session")
def write_dicom_series():
    """``write_dicom_series(folder, volume, series_uid=None, shuffle=True)``: a CT series of
    one DICOM file per slice of a radiomics Volume, slices in shuffled order (radiomics, gui)."""
    return _write_dicom_series


def _write_dicom_series(folder, volume, series_uid=None, shuffle=True) -> None:
    """Write ``volume`` (a radiomics Volume, HU) as a CT series of one DICOM file per slice."""
    import numpy as np
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    folder.mkdir(exist_ok=True)
    series_uid = series_uid or generate_uid()
    dz, dy, dx = volume.spacing
    order = (
        np.random.default_rng(0).permutation(len(volume.array))
        if shuffle
        else range(len(volume.array))
    )
    for k in order:
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
        ds.SeriesInstanceUID = series_uid
        ds.Modality = "CT"
        ds.Rows, ds.Columns = volume.array.shape[1:]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.PixelSpacing = [dy, dx]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [0.0, 0.0, 10.0 + k * dz]
        ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
        ds.PixelData = (volume.array[k].astype(np.int32) + 1024).astype("<u2").tobytes()
        ds.save_as(folder / f"slice{k:03d}.dcm", enforce_file_format=True)
    (folder / "notes.txt").write_text("not dicom")
