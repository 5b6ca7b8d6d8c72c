"""Annotations across the registered pair: copy to the other pane, follow the registration.

*Copy to other pane* (Annotations menu and the pane's context menu) carries the
selected annotations of one pane onto the other through the sync group's
pane-to-pane matrix (:func:`~her2viewer.annotations.transfer.transfer`): the copies
are new annotations of the other pane's document, marked ``transferred_from`` the
source slide, added by one undoable command and editable there. When the pair's
registration changes (a nudge, a landmark fit: ``MainWindow.pane_transform_changed``)
every copy whose geometry was not edited since follows it
(:func:`~her2viewer.annotations.transfer.remap`, one command per pane); an edited,
locked or deleted copy stays where the pathologist left it.

The link lives in the copy itself (``Annotation.copy_link``, saved with it by the
annotation store), so it survives a restart and a project case reopened: the source
object's id, the source slide's fingerprint, the matrix the copy was placed with and
a digest of its coordinates as placed. A copy whose coordinates no longer match that
digest was edited. Copies are placed on the coordinate grid GeoJSON files keep, so one
read back from its store is exactly the copy placed.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import shapely
from PySide6.QtCore import QObject
from PySide6.QtGui import QAction

from her2viewer.annotations.commands import Add, Replace
from her2viewer.annotations.model import Annotation
from her2viewer.annotations.transfer import remap, transfer
from her2viewer.errors import Her2ViewerError

#: Decimals of a placed copy's level-0 coordinates: those GeoJSON files keep
#: (:mod:`her2viewer.geometry.geojson`), so an unedited copy reads back unchanged.
PLACED_DECIMALS = 3


def placed_digest(geometry) -> str:
    """A fingerprint of ``geometry``'s coordinates (a copy as placed, or as it is now)."""
    coords = np.ascontiguousarray(shapely.get_coordinates(geometry), np.float64)
    return hashlib.blake2b(coords.tobytes(), digest_size=12).hexdigest()


def place(copy: Annotation, source_id: str, source_slide: str, matrix) -> Annotation:
    """``copy`` on the files' coordinate grid, linked to its source for following.

    Parameters
    ----------
    copy : Annotation
        A copy in the target slide's level-0 pixels.
    source_id : str
        The id of the annotation it was copied from.
    source_slide : str
        The fingerprint of the source slide.
    matrix : array_like, shape (3, 3)
        Source level-0 -> target level-0, the matrix that placed it.
    """
    grid = shapely.transform(copy.geometry, lambda c: np.round(c, PLACED_DECIMALS))
    placed = copy.replace(geometry=grid)  # repaired again if the grid broke it
    link = {
        "source": source_id,
        "source_slide": source_slide,
        "matrix": np.asarray(matrix, float).tolist(),
        "placed": placed_digest(placed.geometry),
    }
    return placed.replace(copy_link=link)


def placed_matrix(ann: Annotation, source_slide: str) -> np.ndarray | None:
    """The matrix that placed ``ann`` when it is an unedited, unlocked copy from the slide
    ``source_slide``; None otherwise (a damaged link included: it no longer follows)."""
    link = ann.copy_link
    if (
        ann.locked
        or not link
        or link.get("source_slide") != source_slide
        or link.get("placed") != placed_digest(ann.geometry)
    ):
        return None
    try:
        matrix = np.array(link.get("matrix"), dtype=float)
    except (TypeError, ValueError):
        return None
    return matrix if matrix.shape == (3, 3) and np.isfinite(matrix).all() else None


class PairAnnotations(QObject):
    """Copy annotations between a window's two panes and keep the copies registered.

    Parameters
    ----------
    window : MainWindow
        Its ``views[0]`` and ``views[1]`` are the pair; ``sync`` gives the matrices.
    tools : AnnotationTools
        The per-pane controllers (documents, selection, undo stacks) and the
        Annotations menu, which gets *Copy to other pane*.
    """

    def __init__(self, window, tools):
        super().__init__(window)
        self.window = window
        self.tools = tools
        self.action = QAction("Copy to &other pane", self)
        self.action.setToolTip("Carry the selected annotations onto the registered other slide")
        self.action.triggered.connect(lambda _checked=False: self.copy_selected())
        tools.menu.addSeparator()
        tools.menu.addAction(self.action)
        window.pane_transform_changed.connect(lambda _index: self.follow())

    def fill_menu(self, menu, view) -> None:
        """Add *Copy to other pane* to ``view``'s context menu when it has a selection."""
        controller = self.tools.controllers.get(view)
        if controller is not None and controller.selected_ids:
            menu.addAction("Copy to other pane", lambda: self.copy_selected(view))

    def _other(self, view):
        """The other pane of the pair (None when ``view`` is not one of the pair)."""
        pair = self.window.views[:2]
        return pair[1 - pair.index(view)] if len(pair) == 2 and view in pair else None

    def _linked(self, *views) -> bool:
        """Whether the panes are linked by a registration (not only in relative step)."""
        return all(self.window.sync.has_transform(view) for view in views)

    def _refusal(self, view, target) -> str | None:
        """Why the selection of ``view`` cannot be copied to ``target`` now, or None."""
        controllers = self.tools.controllers
        if target is None or view not in controllers or target not in controllers:
            return "Open slides in both panes to copy annotations from one to the other."
        if not controllers[view].selected_ids:
            return "Select the annotations to copy to the other pane first."
        if not self._linked(view, target):
            return (
                "Register the pair first (IHC panel, a registration file or View > Landmark "
                "registration); the panes are only in relative step."
            )
        return None

    def copy_selected(self, view=None) -> list[Annotation]:
        """Copy the selection of ``view`` (the active pane) onto the other pane.

        The copies are selected there; a refusal is shown in one sentence. Returns the
        copies (empty when refused).
        """
        view = view or self.window.active
        target = self._other(view)
        problem = self._refusal(view, target)
        if problem is not None:
            self.window.show_error(problem)
            return []
        matrix = self.window.sync.matrix(view, target)
        name = Path(view.slide.info.path).name
        selected = self.tools.controllers[view].selected()
        try:
            copies = transfer(selected, matrix, source=name)
        except Her2ViewerError as exc:  # a link no registration could give (a flat map)
            self.window.show_error(str(exc))
            return []
        fingerprint = view.slide.info.fingerprint
        copies = [
            place(copy, ann.id, fingerprint, matrix)
            for ann, copy in zip(selected, copies, strict=True)
        ]
        controller = self.tools.controllers[target]
        if not controller.push(Add(copies, f"Copy {len(copies)} from {name}")):
            return []
        controller.select([copy.id for copy in copies])
        return copies

    def follow(self) -> list[str]:
        """Move the unedited copies to where the current registration puts them.

        Returns the ids moved. Copies that were edited or deleted, or whose source slide
        is not in the other pane, stay; locked ones and those of panes not linked by a
        registration now stay too (and follow again once unlocked or linked).
        """
        moved = []
        for target in self.window.views[:2]:
            changes = self._followed(self._other(target), target)
            if changes:
                description = f"Follow the registration ({len(changes)} transferred)"
                self.tools.controllers[target].push(Replace(changes, description))
                moved += list(changes)
        return moved

    def _followed(self, source, target) -> dict[str, Annotation]:
        """The copies in ``target`` from ``source``'s slide, moved by the registration now."""
        controller = self.tools.controllers.get(target)
        if controller is None or source is None or source.slide is None:
            return {}
        if not self._linked(source, target):
            return {}
        matrix = self.window.sync.matrix(source, target)
        fingerprint = source.slide.info.fingerprint
        changes = {}
        for ann in list(controller.document):
            old = placed_matrix(ann, fingerprint)
            if old is None or np.allclose(matrix, old, rtol=0.0, atol=1e-9):
                continue
            try:
                (followed,) = remap([ann], old, matrix)
            except Her2ViewerError:  # a link file damaged into a flat map: it stays
                continue
            changes[ann.id] = place(followed, ann.copy_link.get("source"), fingerprint, matrix)
        return changes
