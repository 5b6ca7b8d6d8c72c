"""Report figures drawn as PNG with OpenCV (no matplotlib, no display).

Each function takes plain numbers and returns an RGB ``uint8`` image; the
report writes them with :func:`write_png`. The GUI draws the same data with
pyqtgraph from ``summary.json``.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from her2viewer.errors import OutputError
from her2viewer.outputs import write_bytes_atomic

WIDTH, HEIGHT = 640, 520
MARGIN = 70
FONT = cv2.FONT_HERSHEY_SIMPLEX
#: Distinct RGB colours for readers (cycled).
PALETTE = [
    (31, 119, 180),
    (214, 39, 40),
    (44, 160, 44),
    (148, 103, 189),
    (255, 127, 14),
    (23, 190, 207),
    (227, 119, 194),
    (140, 86, 75),
]


def _canvas(title: str) -> np.ndarray:
    image = np.full((HEIGHT, WIDTH, 3), 255, np.uint8)
    cv2.putText(image, title, (MARGIN, 35), FONT, 0.7, (0, 0, 0), 2, cv2.LINE_AA)
    return image


def _text(image, text, xy, scale=0.45, color=(0, 0, 0)) -> None:
    cv2.putText(image, text, (int(xy[0]), int(xy[1])), FONT, scale, color, 1, cv2.LINE_AA)


def _axes(image, xlabel: str, ylabel: str, ymax: float = 1.0, xticks: bool = True):
    """Draw unit-square axes (y from 0 to ymax) and return a data->pixel mapping."""
    x0, y0, x1, y1 = MARGIN, HEIGHT - MARGIN, WIDTH - 30, 60
    cv2.rectangle(image, (x0, y1), (x1, y0), (0, 0, 0), 1)
    for i in range(6):
        fx = x0 + (x1 - x0) * i / 5
        fy = y0 - (y0 - y1) * i / 5
        cv2.line(image, (x0 - 5, int(fy)), (x0, int(fy)), (0, 0, 0), 1)
        if xticks:
            cv2.line(image, (int(fx), y0), (int(fx), y0 + 5), (0, 0, 0), 1)
            _text(image, f"{i / 5:.1f}", (fx - 12, y0 + 22))
        _text(image, f"{ymax * i / 5:.3g}", (x0 - 48, fy + 5))
    _text(image, xlabel, ((x0 + x1) / 2 - 60, HEIGHT - 20), 0.5)
    _text(image, ylabel, (8, y1 - 12), 0.5)

    def to_px(x: float, y: float) -> tuple[int, int]:
        return int(x0 + (x1 - x0) * x), int(y0 - (y0 - y1) * y / ymax)

    return to_px


def roc_figure(
    fpr: list[float] | None,
    tpr: list[float] | None,
    points: list[tuple[str, float, float]],
    auc: float | None = None,
) -> np.ndarray:
    """ROC curve of the model with each reader's operating point.

    Parameters
    ----------
    fpr, tpr : list of float or None
        The model's curve (omitted when there is no model).
    points : list of (name, fpr, tpr)
        Readers' operating points.
    auc : float, optional
        The model's AUC, written in the legend.
    """
    image = _canvas("ROC: model and readers")
    to_px = _axes(image, "1 - specificity", "sensitivity")
    cv2.line(image, to_px(0, 0), to_px(1, 1), (190, 190, 190), 1, cv2.LINE_AA)
    if fpr is not None and tpr is not None:
        pts = np.array([to_px(x, y) for x, y in zip(fpr, tpr, strict=True)], np.int32)
        cv2.polylines(image, [pts], False, (0, 0, 0), 2, cv2.LINE_AA)
        label = "model" if auc is None else f"model (AUC {auc:.2f})"
        _text(image, label, (WIDTH - 250, HEIGHT - MARGIN - 15 - 20 * len(points)))
    for i, (name, x, y) in enumerate(points):
        color = PALETTE[i % len(PALETTE)]
        cv2.circle(image, to_px(x, y), 7, color, -1, cv2.LINE_AA)
        _text(
            image,
            name,
            (WIDTH - 250, HEIGHT - MARGIN - 15 - 20 * (len(points) - 1 - i)),
            color=color,
        )
    return image


def confusion_figure(labels: list[str], matrix: list[list[int]], title: str) -> np.ndarray:
    """Confusion matrix as shaded cells with counts (truth in rows)."""
    image = _canvas(title)
    k = len(labels)
    size = min(WIDTH - 2 * MARGIN - 40, HEIGHT - 2 * MARGIN - 40) // k
    left, top = MARGIN + 60, 90
    cm = np.asarray(matrix, float)
    peak = max(cm.max(), 1.0)
    for i in range(k):
        for j in range(k):
            shade = int(255 - 180 * cm[i, j] / peak)
            x, y = left + j * size, top + i * size
            cv2.rectangle(image, (x, y), (x + size, y + size), (shade, shade, 255), -1)
            cv2.rectangle(image, (x, y), (x + size, y + size), (0, 0, 0), 1)
            _text(image, str(int(cm[i, j])), (x + size / 2 - 10, y + size / 2 + 8), 0.8)
        _text(image, labels[i], (left - 70, top + i * size + size / 2 + 5))
        _text(image, labels[i], (left + i * size + size / 2 - 25, top + k * size + 22))
    _text(image, "truth (rows) / answer (columns)", (left, top + k * size + 50), 0.5)
    return image


def bar_figure(
    names: list[str], values: list[float], lows: list[float], highs: list[float], title: str
) -> np.ndarray:
    """Bars (e.g. median reading time per reader) with min-max whiskers."""
    image = _canvas(title)
    ymax = max([*highs, *values, 1e-9]) * 1.1
    to_px = _axes(image, "", "seconds", ymax, xticks=False)
    n = max(len(names), 1)
    for i, (name, value, low, high) in enumerate(zip(names, values, lows, highs, strict=True)):
        color = PALETTE[i % len(PALETTE)]
        cx = (i + 0.5) / n
        half = 0.3 / n
        cv2.rectangle(image, to_px(cx - half, 0), to_px(cx + half, value), color, -1)
        cv2.line(image, to_px(cx, low), to_px(cx, high), (0, 0, 0), 1, cv2.LINE_AA)
        x, _ = to_px(cx - half, 0)
        _text(image, name[:18], (x, HEIGHT - MARGIN + 40), 0.4)
    return image


def write_png(image: np.ndarray, path: Path) -> None:
    """Write an RGB image as PNG, atomically (see :func:`her2viewer.outputs.write_bytes_atomic`)."""
    ok, data = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    if not ok:
        raise OutputError(f"cannot write {path}: the figure could not be encoded as PNG.")
    write_bytes_atomic(path, data.tobytes())
