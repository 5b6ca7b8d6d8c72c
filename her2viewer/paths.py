"""Where the application keeps its per-user files (cache, settings)."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP_NAME = "her2viewer"
#: Demo model bundles and other files shipped with the source tree.
RESOURCES_DIR = Path(__file__).resolve().parents[1] / "resources"


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
