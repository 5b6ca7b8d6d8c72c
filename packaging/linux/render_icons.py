"""Render the PNG icon set from packaging/linux/icons/her2viewer.svg with Qt's SVG renderer.

Run ``python packaging/linux/render_icons.py`` after editing the SVG; it rewrites
``icons/her2viewer-<size>.png`` for every size in :data:`SIZES`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ICONS = Path(__file__).resolve().parent / "icons"
SVG = ICONS / "her2viewer.svg"
#: The hicolor sizes the desktop entry may be shown at.
SIZES = (16, 24, 32, 48, 64, 128, 256)


def render(svg: Path, size: int, out: Path) -> None:
    """Render ``svg`` to a transparent ``size`` x ``size`` PNG at ``out``.

    Parameters
    ----------
    svg : Path
        Source SVG file.
    size : int
        Side of the square PNG in pixels.
    out : Path
        PNG file to write.
    """
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    renderer = QSvgRenderer(str(svg))
    if not renderer.isValid():
        raise ValueError(f"{svg} is not a valid SVG file.")
    image = QImage(size, size, QImage.Format.Format_ARGB32)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    renderer.render(painter)
    painter.end()
    if not image.save(str(out)):
        raise OSError(f"could not write {out}")


def main() -> int:
    """Render every size of the icon set next to the SVG."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtGui import QGuiApplication

    _app = QGuiApplication.instance() or QGuiApplication(sys.argv[:1])
    for size in SIZES:
        render(SVG, size, ICONS / f"her2viewer-{size}.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
