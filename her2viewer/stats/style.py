"""The house style of every file figure and report: palette, fonts, sizes, resolution.

Plain data, without matplotlib, so that the GUI's pyqtgraph plots take the same palette
without importing matplotlib; :mod:`her2viewer.stats.figures` draws with it.
"""

from __future__ import annotations

#: Okabe-Ito colours (safe for the common colour-vision deficiencies), RGB 0-255, cycled
#: for readers, models and classes; the GUI's pyqtgraph plots use the same list.
PALETTE = [
    (0, 114, 178),  # blue
    (213, 94, 0),  # vermillion
    (0, 158, 115),  # bluish green
    (204, 121, 167),  # reddish purple
    (230, 159, 0),  # orange
    (86, 180, 233),  # sky blue
    (240, 228, 66),  # yellow
    (0, 0, 0),  # black
]
#: Resolution of raster figures (PNG), dots per inch.
DPI = 150
#: Size of one figure, inches (width, height).
SIZE = (6.4, 4.8)
#: Colormap of confusion matrices (sequential, readable in grey).
MATRIX_CMAP = "Blues"
#: Figure formats by file suffix.
FORMATS = {".png": "png", ".svg": "svg", ".pdf": "pdf"}
#: Matplotlib settings of the house style, applied while a figure is drawn.
STYLE = {
    "font.family": "DejaVu Sans",
    "font.size": 10,
    "axes.titlesize": 12,
    "axes.labelsize": 10,
    "legend.fontsize": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "svg.fonttype": "none",
    "pdf.fonttype": 42,
}
