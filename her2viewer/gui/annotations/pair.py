"""Annotations across the registered pair: copy to the other pane, follow the registration.

*Copy to other pane* (Annotations menu and the pane's context menu) carries the
selected annotations of one pane onto the other through the sync group's
pane-to-pane matrix (:func:`~her2viewer.annotations.transfer.transfer`): the copies
are new annotations of the other pane's document, marked ``transferred_from`` the
source slide, added by one undoable command and editable there. When the pair's
registration changes (a nudge, a landmark fit: ``MainWindow.pane_transform_changed``)
every copy whose geometry was not edited since follows it
(:func:`~her2viewer.annotations.transfer.remap`, one command per pane); an edited,
locked or deleted copy stays where the pathologist left it. Copies are followed for
the session in which they were made.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PySide6.QtCore import QObject
from PySide6.QtGui import QAction

from her2viewer.annotations.commands import Add, Replace
from her2viewer.annotations.model import Annotation
from her2viewer.annotations.transfer import remap, transfer
from her2viewer.errors import Her2ViewerError


@dataclass
class _Copy:
    """A transferred annotation as last placed, and how it was placed."""

    source: object  # the SlideView it was copied from
    target: object  # the SlideView it lives in
    slides: tuple  # (source slide, target slide) at the time: another slide ends the link
    placed: Annotation
    matrix: np.ndarray  # source level-0 -> target level-0 used to place it


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
        self.copies: dict[str, _Copy] = {}
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
        try:
            copies = transfer(self.tools.controllers[view].selected(), matrix, source=name)
        except Her2ViewerError as exc:  # a link no registration could give (a flat map)
            self.window.show_error(str(exc))
            return []
        controller = self.tools.controllers[target]
        if not controller.push(Add(copies, f"Copy {len(copies)} from {name}")):
            return []
        controller.select([copy.id for copy in copies])
        slides = (view.slide, target.slide)
        for copy in copies:
            self.copies[copy.id] = _Copy(view, target, slides, copy, matrix)
        return copies

    def _current(self, ann_id: str, copy: _Copy) -> Annotation | None:
        """The copy as it is now, when it may still follow (None: stop following it)."""
        controller = self.tools.controllers.get(copy.target)
        if (
            controller is None
            or (copy.source.slide, copy.target.slide) != copy.slides
            or ann_id not in controller.document
        ):
            return None
        current = controller.document.get(ann_id)
        if not current.geometry.equals_exact(copy.placed.geometry, 0.0):
            return None  # edited since it was carried: it stays where it was put
        return current

    def follow(self) -> list[str]:
        """Move the unedited copies to where the current registration puts them.

        Returns the ids moved. Copies that were edited, deleted or whose slide was
        replaced are no longer followed; locked ones and those of panes not linked by a
        registration now stay (and follow again once it is back).
        """
        moved: dict[object, dict[str, Annotation]] = {}
        for ann_id, copy in list(self.copies.items()):
            current = self._current(ann_id, copy)
            if current is None:
                del self.copies[ann_id]
                continue
            if current.locked or not self._linked(copy.source, copy.target):
                continue
            matrix = self.window.sync.matrix(copy.source, copy.target)
            if np.allclose(matrix, copy.matrix, rtol=0.0, atol=1e-9):
                continue
            (followed,) = remap([current], copy.matrix, matrix)
            moved.setdefault(copy.target, {})[ann_id] = followed
            copy.placed, copy.matrix = followed, matrix
        for target, changes in moved.items():
            description = f"Follow the registration ({len(changes)} transferred)"
            self.tools.controllers[target].push(Replace(changes, description))
        return [ann_id for changes in moved.values() for ann_id in changes]
