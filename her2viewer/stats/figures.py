"""File figures drawn with matplotlib in the house style of :mod:`her2viewer.stats.style`.

Every figure the project writes to a file (study reports, evaluations, radiomics reports)
is a :class:`matplotlib.figure.Figure` built here, without pyplot's global state, and
written by :func:`save_figure` as PNG, SVG or PDF according to the file's suffix. The
in-app plots stay pyqtgraph.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from her2viewer.errors import OutputError
from her2viewer.outputs import atomic_output, output_error
from her2viewer.stats.style import DPI, FORMATS, MATRIX_CMAP, PALETTE, SIZE, STYLE


def colour(index: int) -> tuple[float, float, float]:
    """Return the palette colour ``index`` (cycled) as matplotlib's 0-1 RGB."""
    return tuple(c / 255 for c in PALETTE[index % len(PALETTE)])


def styled(draw: Callable[..., Figure]) -> Callable[..., Figure]:
    """Decorate a figure builder so that it draws in the house :data:`STYLE`."""

    @functools.wraps(draw)
    def wrapper(*args, **kwargs) -> Figure:
        with matplotlib.rc_context(STYLE):
            return draw(*args, **kwargs)

    return wrapper


def _axes(title: str, xlabel: str, ylabel: str) -> tuple[Figure, Axes]:
    """Return a new figure of the house size with one titled, labelled axes."""
    figure = Figure(figsize=SIZE, layout="constrained")
    axes = figure.add_subplot()
    axes.set(title=title, xlabel=xlabel, ylabel=ylabel)
    return figure, axes


@styled
def roc_figure(
    fpr: Sequence[float] | None,
    tpr: Sequence[float] | None,
    points: Sequence[tuple[str, float, float]],
    auc: float | None = None,
) -> Figure:
    """ROC curve of the model with each reader's operating point.

    Parameters
    ----------
    fpr, tpr : sequence of float or None
        The model's curve (omitted when there is no model).
    points : sequence of (name, fpr, tpr)
        Readers' operating points.
    auc : float, optional
        The model's AUC, written in the legend.
    """
    figure, axes = _axes("ROC: model and readers", "1 - specificity", "sensitivity")
    axes.plot([0, 1], [0, 1], color="0.75", linewidth=1, linestyle="--")
    if fpr is not None and tpr is not None:
        label = "model" if auc is None else f"model (AUC {auc:.2f})"
        axes.plot(fpr, tpr, color="black", linewidth=2, label=label)
    for i, (name, x, y) in enumerate(points):
        axes.plot(x, y, "o", markersize=8, color=colour(i), label=name)
    _unit_square(axes)
    if axes.get_legend_handles_labels()[0]:
        axes.legend(loc="lower right")
    return figure


@styled
def curves_figure(
    title: str, xlabel: str, ylabel: str, series: dict, ymax: float | None = 1.0
) -> Figure:
    """Line plot of named ``(x, y)`` series, y from 0 to ``ymax`` (None: automatic)."""
    figure, axes = _axes(title, xlabel, ylabel)
    for i, (name, (xs, ys)) in enumerate(series.items()):
        axes.plot(xs, ys, color=colour(i), linewidth=2, label=name, marker=".")
    if ymax is not None:
        axes.set_ylim(0, ymax * 1.02)
    if series:
        axes.legend(loc="best")
    return figure


@styled
def confusion_figure(labels: Sequence[str], matrix: Sequence[Sequence[int]], title: str) -> Figure:
    """Confusion matrix as shaded cells with counts (truth in rows, answers in columns)."""
    cm = np.asarray(matrix, float)
    figure, axes = _axes(title, "answer", "truth")
    axes.grid(False)
    image = axes.imshow(cm, cmap=MATRIX_CMAP, vmin=0, vmax=max(cm.max(), 1.0))
    ticks = np.arange(len(labels))
    axes.set_xticks(ticks, labels)
    axes.set_yticks(ticks, labels)
    for (i, j), count in np.ndenumerate(cm):
        dark = count > 0.6 * max(cm.max(), 1.0)
        axes.text(j, i, f"{int(count)}", ha="center", va="center", fontsize=12,
                  color="white" if dark else "black")  # fmt: skip
    figure.colorbar(image, ax=axes, label="cases")
    return figure


@styled
def bar_figure(
    names: Sequence[str],
    values: Sequence[float],
    lows: Sequence[float],
    highs: Sequence[float],
    title: str,
    ylabel: str = "seconds",
) -> Figure:
    """Bars (e.g. median reading time per reader) with whiskers from ``lows`` to ``highs``."""
    figure, axes = _axes(title, "", ylabel)
    x = np.arange(len(names))
    values = np.asarray(values, float)
    error = [values - np.asarray(lows, float), np.asarray(highs, float) - values]
    axes.bar(x, values, yerr=error, capsize=4, color=[colour(i) for i in x], edgecolor="black")
    axes.set_xticks(x, [name[:24] for name in names], rotation=30, ha="right")
    axes.set_ylim(bottom=0)
    axes.grid(axis="x", visible=False)
    return figure


@styled
def histogram_figure(
    values: np.ndarray, thresholds: dict[str, float], title: str, xlabel: str, bins: int = 60
) -> Figure:
    """A histogram of ``values`` (e.g. per-cell DAB OD) with each named threshold drawn."""
    figure, axes = _axes(title, xlabel, "cells")
    axes.hist(np.asarray(values, float), bins=bins, color=colour(5), edgecolor="white")
    for index, (name, value) in enumerate(thresholds.items(), start=1):
        axes.axvline(value, color=colour(index), linestyle="--", label=f"{name} {value:g}")
    if thresholds:
        axes.legend()
    axes.grid(axis="x", visible=False)
    return figure


@styled
def images_figure(title: str, images: dict[str, np.ndarray]) -> Figure:
    """RGB images side by side (e.g. slide thumbnails), each titled by its key."""
    figure = Figure(figsize=(SIZE[0] * 1.5, SIZE[1]), layout="constrained")
    figure.suptitle(title)
    for axes, (name, image) in zip(
        figure.subplots(1, len(images), squeeze=False)[0], images.items(), strict=True
    ):
        axes.imshow(image)
        axes.set_title(name)
        axes.axis("off")
    return figure


def _unit_square(axes: Axes) -> None:
    """Show exactly the unit square, equal in both directions (ROC space)."""
    axes.set_xlim(-0.01, 1.01)
    axes.set_ylim(-0.01, 1.01)
    axes.set_aspect("equal")


def save_figure(figure: Figure, path: str | os.PathLike) -> Path:
    """Write a figure atomically as PNG, SVG or PDF, chosen by the suffix of ``path``.

    Raises
    ------
    OutputError
        One sentence naming the file for an unknown suffix or a failed write.
    """
    path = Path(path)
    kind = FORMATS.get(path.suffix.lower())
    if kind is None:
        raise OutputError(f"cannot write {path}: a figure is saved as .png, .svg or .pdf.")
    with atomic_output(path) as tmp, write_errors(path):
        figure.savefig(tmp, format=kind, dpi=DPI, metadata=_metadata(kind))
    return path


@contextlib.contextmanager
def write_errors(path: Path) -> Iterator[None]:
    """Turn a matplotlib write that failed on an operating-system error into one sentence.

    On a full disk matplotlib's PDF writer fails a second time while it cleans up (an
    ``AttributeError`` whose context is the ``OSError``), so the chain is searched.

    Raises
    ------
    OutputError
        Naming ``path`` and the cause, when an ``OSError`` is behind the failure.
    """
    try:
        yield
    except OutputError:
        raise
    except Exception as exc:
        cause = exc
        while cause is not None and not isinstance(cause, OSError):
            cause = cause.__cause__ or cause.__context__
        if cause is None:
            raise
        raise output_error(path, cause) from exc


def _metadata(kind: str) -> dict:
    """Return file metadata without a creation date, so that a figure is reproducible."""
    if kind == "pdf":
        return {"CreationDate": None}
    if kind == "svg":
        return {"Date": None}
    return {}


@styled
def mrmc_figure(
    curves: dict[str, tuple[Sequence[float], Sequence[float]]],
    readers: dict[str, Sequence[float]],
    intervals: dict[str, tuple[float, float, float]],
    fom: str = "AUC",
) -> Figure:
    """MRMC study: averaged ROC curve per modality, and each reader's FOM per modality.

    Parameters
    ----------
    curves : dict
        Modality -> ``(fpr, tpr)`` of the readers' averaged ROC curve.
    readers : dict
        Modality -> each reader's FOM, readers in the same order in every modality (a
        grey line joins a reader's points).
    intervals : dict
        Modality -> ``(mean, low, high)``: the mean FOM and its confidence interval.
    fom : str
        Name of the figure of merit, for the axis.
    """
    figure = Figure(figsize=(SIZE[0] * 1.6, SIZE[1]), layout="constrained")
    roc, points = figure.subplots(1, 2)
    roc.set(title="Averaged ROC curves", xlabel="1 - specificity", ylabel="sensitivity")
    roc.plot([0, 1], [0, 1], color="0.75", linewidth=1, linestyle="--")
    for i, (name, (fpr, tpr)) in enumerate(curves.items()):
        roc.plot(fpr, tpr, color=colour(i), linewidth=2, label=name)
    _unit_square(roc)
    roc.legend(loc="lower right")
    names = list(readers)
    x = np.arange(len(names))
    values = np.array([readers[n] for n in names], float)
    points.plot(x, values, color="0.8", linewidth=1, zorder=1)
    for i, name in enumerate(names):
        points.plot(np.full(values.shape[1], i), values[i], "o", color=colour(i), alpha=0.7)
        mean, low, high = intervals[name]
        points.errorbar(i + 0.15, mean, yerr=[[mean - low], [high - mean]], fmt="D",
                        color="black", capsize=5)  # fmt: skip
    points.set(title=f"Reader {fom} per modality (mean, 95% CI)", ylabel=fom)
    points.set_xticks(x, [n[:24] for n in names])
    points.set_xlim(-0.5, len(names) - 0.5)
    points.grid(axis="x", visible=False)
    return figure
