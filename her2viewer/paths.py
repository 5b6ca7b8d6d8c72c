"""Where the application keeps its per-user files (cache, settings)."""

from __future__ import annotations

import os
from importlib.resources import files
from pathlib import Path

import platformdirs

APP_NAME = "her2viewer"


def _resources_dir() -> Path:
    """Return the folder of the shipped resources (demo model bundles).

    An installed wheel carries them inside the package (``her2viewer/resources``, mapped there
    from the checkout's top-level ``resources/`` at build time); a checkout, editable install
    included, reads the top-level folder itself.

    Returns
    -------
    Path
        The resources folder.
    """
    packaged = Path(str(files("her2viewer") / "resources"))
    return packaged if packaged.is_dir() else Path(__file__).resolve().parents[1] / "resources"


#: Demo model bundles and other files shipped with the application.
RESOURCES_DIR = _resources_dir()


def cache_dir() -> Path:
    """Return the per-user cache directory, creating it if needed.

    ``HER2VIEWER_CACHE`` overrides the platform default (used by tests).

    Returns
    -------
    Path
        An existing directory.
    """
    override = os.environ.get("HER2VIEWER_CACHE")
    path = Path(override) if override else Path(platformdirs.user_cache_dir(APP_NAME))
    path.mkdir(parents=True, exist_ok=True)
    return path


def data_dir() -> Path:
    """Return the per-user data directory (annotation stores), creating it if needed.

    ``HER2VIEWER_DATA`` overrides the platform default (used by tests). Unlike the
    cache, nothing here may be deleted to save space: it holds the user's own work.

    Returns
    -------
    Path
        An existing directory.
    """
    override = os.environ.get("HER2VIEWER_DATA")
    path = Path(override) if override else Path(platformdirs.user_data_dir(APP_NAME))
    path.mkdir(parents=True, exist_ok=True)
    return path
