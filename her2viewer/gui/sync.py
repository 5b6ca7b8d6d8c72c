"""Navigation in step between panes, through a known level-0 transform or relatively.

The maths (:func:`~her2viewer.viewport.map_state`, :func:`~her2viewer.viewport.relative_transform`)
lives in the Qt-free viewport; this module only wires the panes' signals.
"""

from __future__ import annotations

import math
from contextlib import contextmanager

import numpy as np
from PySide6.QtCore import QObject

from her2viewer.gui.slideview import SlideView
from her2viewer.viewport import map_state, relative_transform


class SyncGroup(QObject):
    """Keeps several :class:`SlideView` panes looking at the same tissue.

    Each view has a transform from its level-0 pixels to a common reference frame
    (the first view's level-0). Views added without one are synced relatively: their
    transform is taken from how the panes look at the moment they are linked.
    """

    def __init__(self, parent=None):
        super().__init__(parent)
        self.views: list[SlideView] = []
        self._to_reference: dict[int, np.ndarray] = {}
        self._known: dict[int, bool] = {}
        self._busy = False
        self.enabled = True

    def add(self, view: SlideView, to_reference: np.ndarray | None = None) -> None:
        """Link ``view``; ``to_reference`` maps its level-0 px to the reference frame."""
        if view not in self.views:
            self.views.append(view)
            view.view_changed.connect(lambda v=view: self._on_view_changed(v))
            view.cursor_moved.connect(lambda x, y, v=view: self._on_cursor(v, x, y))
        self.set_transform(view, to_reference)

    def set_transform(self, view: SlideView, to_reference: np.ndarray | None) -> None:
        """Set (or with ``None`` re-derive relatively) a view's transform to the reference."""
        known = to_reference is not None or view is self.views[0]
        if to_reference is None:
            first = self.views[0]
            to_reference = (
                np.eye(3) if view is first else relative_transform(view.state, first.state)
            )
        self._to_reference[id(view)] = np.asarray(to_reference, float)
        self._known[id(view)] = known

    @contextmanager
    def paused(self):
        """Move panes without moving the others (e.g. while a slide is being opened)."""
        busy, self._busy = self._busy, True
        try:
            yield
        finally:
            self._busy = busy

    def has_transform(self, view: SlideView) -> bool:
        """Whether ``view`` is linked by a known transform (the reference pane always is)."""
        return self._known.get(id(view), False)

    def matrix(self, source: SlideView, target: SlideView) -> np.ndarray:
        """3x3 mapping ``source`` level-0 px to ``target`` level-0 px."""
        return np.linalg.inv(self._to_reference[id(target)]) @ self._to_reference[id(source)]

    def set_view_sync(self, view: SlideView, enabled: bool) -> None:
        """Toggle sync for one pane; turning relative sync back on re-links it where it is."""
        view.sync_enabled = enabled
        if enabled and not self.has_transform(view) and view is not self.views[0]:
            self.set_transform(view, None)

    def _on_view_changed(self, source: SlideView) -> None:
        if self._busy or not self.enabled or not source.sync_enabled:
            return
        self._busy = True
        try:
            for view in self.views:
                if view is source or not view.sync_enabled or view.slide is None:
                    continue
                if source.keep_fit and not (
                    self.has_transform(source) and self.has_transform(view)
                ):
                    # relative sync: fitted panes stay fitted and are re-linked as they are
                    # (the reference pane too, when the other pane was resized and refitted)
                    if not view.keep_fit:
                        view.fit()
                    self.set_transform(source if view is self.views[0] else view, None)
                else:
                    mapped = map_state(source.state, self.matrix(source, view))
                    view.set_state(mapped, keep_fit=source.keep_fit, clamp=False)
        finally:
            self._busy = False

    def _on_cursor(self, source: SlideView, x: float, y: float) -> None:
        source.crosshair = None
        for view in self.views:
            if view is source:
                continue
            linked = self.enabled and view.sync_enabled and not math.isnan(x)
            view.crosshair = (
                tuple(float(v) for v in (self.matrix(source, view) @ [x, y, 1.0])[:2])
                if linked
                else None
            )
            view.update()
