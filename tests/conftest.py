"""Shared fixtures: a small synthetic cohort, the real SVS, an isolated cache."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_REAL = REPO.parent / "shared" / "data" / "real"


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


@pytest.fixture(scope="session")
def cmu_svs() -> Path:
    """The real Aperio SVS from OpenSlide's test data (CC0)."""
    path = SHARED_REAL / "cmu-1-small-region.svs"
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
def panel_window(qtbot, tmp_path):
    """A main window with a small private tile cache, for the analysis-panel tests."""
    from PySide6.QtCore import QSettings

    from her2viewer.gui.mainwindow import MainWindow
    from her2viewer.gui.tiles import TileCache, TileLoader

    loader = TileLoader(TileCache(64), workers=1)
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    win = MainWindow(loader, settings)
    qtbot.addWidget(win)
    win.resize(900, 600)
    win.show()
    yield win
    loader.shutdown()
