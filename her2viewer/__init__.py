"""her2viewer: a whole-slide viewer for HER2 pathology with AI overlays.

The core packages (``slide``, ``tissue``, ...) import without a display; only
``her2viewer.gui`` imports Qt.
"""

__version__ = "0.1.0"
