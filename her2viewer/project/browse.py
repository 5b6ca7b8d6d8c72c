"""Browsing a project (Qt-free): per-case status and key figures, thumbnails, saved results.

What the app's Project panel shows of each case, and how it shows a case again: the
thumbnail made once from the slide and kept in ``thumbnails/`` of the project folder, and
each finished analysis read back from its artefact with its result class's ``load()``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from her2viewer.analysis.cells import CellsResult
from her2viewer.analysis.clam import ClamResult
from her2viewer.analysis.contract import load_npz
from her2viewer.analysis.grade import GradeResult
from her2viewer.analysis.her2net import Her2NetResult
from her2viewer.analysis.ihc import IhcResult
from her2viewer.outputs import prepare_output_dir, write_bytes_atomic
from her2viewer.overlay import MaskLayer
from her2viewer.project.store import Case, Project, ResultRow
from her2viewer.project.tasks import ANALYSES
from her2viewer.slide import open_slide

#: Longest side of a case thumbnail (px).
THUMBNAIL_PX = 128
#: Colour of the tissue outline of a ``segment`` result.
TISSUE_COLOR = (80, 200, 120)


@dataclass
class TissueResult:
    """A ``segment`` result read back: the tissue mask (its artefact) as an outline layer."""

    mask: np.ndarray
    downsample: float

    def layers(self) -> list[MaskLayer]:
        """The tissue outline (level-0 geometry)."""
        return [
            MaskLayer(
                "Tissue",
                labels=self.mask,
                downsample=self.downsample,
                class_names={1: "tissue"},
                colors={1: TISSUE_COLOR},
                mode="outline",
            )
        ]

    @classmethod
    def load(cls, path: str | Path) -> TissueResult:
        """Read a ``segment`` artefact (a :class:`ModelError` when unreadable)."""
        summary, arrays = load_npz(path, "tissue mask")
        return cls(arrays["mask"], summary["downsample"])


#: The result class of each analysis that leaves something to show (``extract`` does not).
RESULT_TYPES: dict[str, type] = {
    "segment": TissueResult,
    "clam": ClamResult,
    "her2net": Her2NetResult,
    "grade": GradeResult,
    "ihc": IhcResult,
    "cells": CellsResult,
}


# ---- status and key figures --------------------------------------------------------------
def case_results(project: Project) -> dict[str, dict[str, ResultRow]]:
    """Every stored result, by case id then analysis name."""
    by_case: dict[str, dict[str, ResultRow]] = {}
    for row in project.results():
        by_case.setdefault(row.case_id, {})[row.analysis] = row
    return by_case


def case_status(case: Case, results: dict[str, ResultRow], analyses: list[str]) -> str:
    """One word for a case: ``failed`` (any), ``done`` (all of ``analyses``), ``partial``, ``new``.

    ``analyses`` are those the project has run on some case; only those that apply to the
    case's slides count.
    """
    if any(row.status == "failed" for row in results.values()):
        return "failed"
    if not results:
        return "new"
    roles = slide_roles(case)
    wanted = {name for name in analyses if ANALYSES[name].role in roles}
    return "done" if wanted <= set(results) else "partial"


def _ihc(summary: dict) -> tuple[str, float]:
    return str(summary.get("score_label", summary["score"])), float(summary["score"])


def _her2net(summary: dict) -> tuple[str, float]:
    percent = float(summary["high_expression_percent"])
    return f"{summary['her2_status']} {percent:.0f}%", percent


def _clam(summary: dict) -> tuple[str, float]:
    probability = list(summary["probabilities"].values())[-1]  # the last (positive) class
    return f"{probability:.2f}", float(probability)


def _cells(summary: dict) -> tuple[str, str]:
    label = summary.get("label") or summary.get("category") or ""
    return label.split(" (")[0], str(summary.get("category", ""))


#: The key figures of the case list: column title -> (analysis, summary -> (text, sort key)).
FIGURES: dict[str, tuple[str, Callable[[dict], tuple[str, object]]]] = {
    "IHC": ("ihc", _ihc),
    "HER2Net": ("her2net", _her2net),
    "CLAM P": ("clam", _clam),
    "Cells": ("cells", _cells),
}


def key_figure(results: dict[str, ResultRow], title: str) -> tuple[str, object] | None:
    """``(text, sort key)`` of the :data:`FIGURES` column ``title``; None when not done.

    A summary without the figure (an older result) counts as not done.
    """
    analysis, figure = FIGURES[title]
    row = results.get(analysis)
    if row is None or row.status != "done":
        return None
    try:
        return figure(row.summary)
    except (KeyError, TypeError, ValueError, IndexError):
        return None


# ---- thumbnails ---------------------------------------------------------------------------
def thumbnail_path(project: Project, fingerprint: str) -> Path:
    """Where the thumbnail of a project slide is kept (``thumbnails/<fingerprint>.png``)."""
    return project.folder / "thumbnails" / f"{fingerprint}.png"


def case_thumbnail(project: Project, case: Case) -> np.ndarray:
    """The RGB thumbnail of a case (its H&E, else its IHC), made from the slide once.

    Reads the slide the first time only (call it off the GUI thread); later calls read the
    PNG kept in the project folder.

    Raises
    ------
    SlideError
        The slide cannot be opened or read.
    OutputError
        The thumbnail cannot be written.
    """
    role = "he" if case.he is not None else "ihc"
    path, fingerprint = case.slide(role)
    kept = thumbnail_path(project, fingerprint)
    image = cv2.imread(str(kept), cv2.IMREAD_COLOR) if kept.is_file() else None
    if image is not None:
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    with open_slide(path) as slide:
        rgb = np.ascontiguousarray(slide.thumbnail(THUMBNAIL_PX))
    prepare_output_dir(kept.parent)
    write_bytes_atomic(kept, cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))[1])
    return rgb


# ---- saved results ------------------------------------------------------------------------
def slide_roles(case: Case) -> list[str]:
    """The roles of the case's slides in pane order (H&E left, IHC right)."""
    return [role for role in ("he", "ihc") if getattr(case, role) is not None]


def saved_results(project: Project, case: Case) -> list[tuple[str, int, object]]:
    """``(analysis, pane, result)`` of every finished analysis of ``case`` that can be shown.

    Each result is read from its artefact with its class's ``load()`` (never recomputed);
    ``pane`` is the index of the analysed slide in :func:`slide_roles`. Reads files: call it
    off the GUI thread.

    Raises
    ------
    Her2ViewerError
        An artefact that cannot be read (one sentence naming it).
    """
    roles = slide_roles(case)
    rows = case_results(project).get(case.case_id, {})
    loaded = []
    for name in ANALYSES:  # the run order: the analyses a panel shows in a stable order
        row, kind = rows.get(name), RESULT_TYPES.get(name)
        if row is None or row.status != "done" or kind is None or not row.artefacts:
            continue
        pane = roles.index(ANALYSES[name].role)
        loaded.append((name, pane, kind.load(project.resolve(row.artefacts[0]))))
    return loaded


def pane_transform(case: Case) -> np.ndarray | None:
    """The IHC -> H&E level-0 matrix the viewer links the panes by (the stored H&E -> IHC
    registration inverted); None without a registration or a pair."""
    if case.registration is None or len(slide_roles(case)) < 2:
        return None
    return np.linalg.inv(np.asarray(case.registration, dtype=float))
