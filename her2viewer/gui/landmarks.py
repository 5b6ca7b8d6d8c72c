"""The landmark tool: correct the pair's registration by clicking matching points.

In landmark mode a click (a press and release without dragging; dragging still pans)
on the H&E pane (pane 1) or the IHC pane (pane 2) places that pane's point of the pair
being picked; the pair is complete once both panes have theirs, and the next click
starts a new one. Numbered markers show the points on both panes. A dock lists the
pairs with the residual of each once three or more are complete (a live least-squares
affine, :func:`~her2viewer.annotations.transfer.fit_landmarks`); *Fit* links the panes
by that affine (``MainWindow.set_pane_transform``) and *Save…* writes the registration
JSON with method ``landmarks``. Esc drops the half-picked pair, or leaves the mode.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PySide6.QtCore import QObject, QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QAction, QColor, QPainter, QPen
from PySide6.QtWidgets import (
    QDockWidget,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from her2viewer.annotations.transfer import LandmarkFit, fit_landmarks, landmark_registration
from her2viewer.errors import Her2ViewerError

#: A press and release closer than this (screen px) is a click that places a point.
CLICK_SLOP_PX = 4.0
MARKER_RADIUS = 9.0
MARKER_COLOR = QColor(255, 64, 160)
PENDING_COLOR = QColor(255, 210, 0)


class LandmarkTool(QObject):
    """The landmark pairs of two panes and the mouse tool that picks them.

    Installed as ``view.tool`` and in ``view.vector_painters`` of both panes; ``pairs``
    holds ``[fixed_point, moving_point]`` per pair (level-0 of each pane, ``None`` while
    not picked yet). ``changed`` fires on every change; ``escape`` when Esc is pressed
    with no half-picked pair.
    """

    changed = Signal()
    escape = Signal()

    def __init__(self, fixed_view, moving_view):
        super().__init__()
        self.views = (fixed_view, moving_view)
        self.pairs: list[list[tuple[float, float] | None]] = []
        self._press: dict[int, QPointF] = {}

    # -- the pairs -------------------------------------------------------------------
    def add_point(self, view, x: float, y: float) -> None:
        """Place ``view``'s point of the pair being picked (or start a new pair)."""
        side = self.views.index(view)
        if not self.pairs or None not in self.pairs[-1]:
            self.pairs.append([None, None])
        self.pairs[-1][side] = (float(x), float(y))
        self.changed.emit()

    def complete(self) -> tuple[np.ndarray, np.ndarray]:
        """``(fixed, moving)`` ``(N, 2)`` level-0 points of the complete pairs."""
        done = [pair for pair in self.pairs if None not in pair]
        fixed = np.array([pair[0] for pair in done], float).reshape(-1, 2)
        return fixed, np.array([pair[1] for pair in done], float).reshape(-1, 2)

    def fit(self) -> LandmarkFit:
        """The moving -> fixed affine of the complete pairs.

        Raises
        ------
        RegistrationError
            With fewer than 3 complete pairs or collinear points (one sentence).
        """
        fixed, moving = self.complete()
        return fit_landmarks(moving, fixed)

    def remove(self, index: int) -> None:
        """Drop pair ``index``."""
        del self.pairs[index]
        self.changed.emit()

    def clear(self) -> None:
        """Drop every pair."""
        self.pairs.clear()
        self.changed.emit()

    def drop_pending(self) -> bool:
        """Drop the half-picked pair; whether there was one."""
        if self.pairs and None in self.pairs[-1]:
            self.pairs.pop()
            self.changed.emit()
            return True
        return False

    # -- SlideView.tool --------------------------------------------------------------
    def press(self, view, event) -> bool:
        """Remember where a left press began; the view still pans if it turns into a drag."""
        if event.button() == Qt.MouseButton.LeftButton:
            self._press[id(view)] = event.position()
        return False

    def move(self, view, event) -> bool:
        """Moving never places a point."""
        return False

    def release(self, view, event) -> bool:
        """A left press and release without dragging places the point under the mouse."""
        start = self._press.pop(id(view), None)
        pos = event.position()
        if start is not None and (pos - start).manhattanLength() <= CLICK_SLOP_PX:
            self.add_point(view, *view.screen_to_level0(pos.x(), pos.y()))
        return False

    def double_click(self, view, event) -> bool:
        """Double clicks zoom, as without the tool."""
        return False

    def key(self, view, event) -> bool:
        """Esc drops the half-picked pair, or (with none) asks to leave the mode."""
        if event.key() != Qt.Key.Key_Escape:
            return False
        if not self.drop_pending():
            self.escape.emit()
        return True

    # -- SlideView.vector_painters ---------------------------------------------------
    def paint(self, painter: QPainter, view) -> None:
        """Numbered markers of ``view``'s points (yellow while the pair is half-picked)."""
        side = self.views.index(view)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        for number, pair in enumerate(self.pairs, 1):
            if pair[side] is None:
                continue
            sx, sy = view.level0_to_screen(*pair[side])
            color = MARKER_COLOR if None not in pair else PENDING_COLOR
            painter.setPen(QPen(QColor(0, 0, 0), 3))
            painter.setBrush(Qt.BrushStyle.NoBrush)
            painter.drawEllipse(QPointF(sx, sy), MARKER_RADIUS, MARKER_RADIUS)
            painter.setPen(QPen(color, 2))
            painter.drawEllipse(QPointF(sx, sy), MARKER_RADIUS, MARKER_RADIUS)
            painter.drawLine(QPointF(sx - 3, sy), QPointF(sx + 3, sy))
            painter.drawLine(QPointF(sx, sy - 3), QPointF(sx, sy + 3))
            painter.drawText(QRectF(sx + 10, sy - 22, 40, 16), str(number))


class LandmarkPanel(QWidget):
    """The dock's content: the pairs and their residuals, Fit, Save…, Remove pair, Clear."""

    HEADERS = ("#", "H&E x, y", "IHC x, y", "residual (px)")

    def __init__(self, mode: LandmarkMode):
        super().__init__()
        self.mode = mode
        self.table = QTableWidget(0, len(self.HEADERS))
        self.table.setHorizontalHeaderLabels(self.HEADERS)
        self.table.verticalHeader().hide()
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
        self.summary = QLabel()
        self.summary.setWordWrap(True)
        buttons = QHBoxLayout()
        self.buttons = {}
        for text, slot in (
            ("Fit", mode.apply_fit),
            ("Save…", mode.save_dialog),
            ("Remove pair", self._remove_selected),
            ("Clear", mode.tool.clear),
            ("Done", mode.stop),
        ):
            button = QPushButton(text)
            button.clicked.connect(lambda checked=False, s=slot: s())
            buttons.addWidget(button)
            self.buttons[text] = button
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("Click a point on the H&E pane, then the same point on the IHC."))
        layout.addWidget(self.table)
        layout.addWidget(self.summary)
        layout.addLayout(buttons)

    def _remove_selected(self) -> None:
        row = self.table.currentRow()
        if 0 <= row < len(self.mode.tool.pairs):
            self.mode.tool.remove(row)

    def refresh(self, pairs, fit: LandmarkFit | None, problem: str | None) -> None:
        """Show ``pairs``, the residual of each complete one under ``fit``, and a summary."""
        self.table.setRowCount(len(pairs))
        residuals = iter(fit.residuals_px if fit is not None else ())
        for row, pair in enumerate(pairs):
            residual = next(residuals, None) if None not in pair else None
            cells = (
                str(row + 1),
                *(f"{p[0]:,.0f}, {p[1]:,.0f}" if p else "click…" for p in pair),
                "" if residual is None else f"{residual:.1f}",
            )
            for col, text in enumerate(cells):
                self.table.setItem(row, col, QTableWidgetItem(text))
        self.table.resizeColumnsToContents()
        self.table.resizeRowsToContents()
        complete = sum(None not in pair for pair in pairs)
        if fit is not None:
            self.summary.setText(f"{complete} pairs: affine RMS residual {fit.rms_px:.1f} px.")
        else:
            self.summary.setText(problem or f"{complete} pairs: 3 or more fit an affine.")
        self.buttons["Fit"].setEnabled(fit is not None)
        self.buttons["Save…"].setEnabled(fit is not None)


class LandmarkMode(QObject):
    """Landmark registration of a main window's two panes (pane 2 moving onto pane 1).

    Parameters
    ----------
    window : MainWindow
        Its ``views[0]`` (fixed, H&E) and ``views[1]`` (moving, IHC) are linked by
        ``window.set_pane_transform(1, matrix)`` on *Fit*.
    menu : QMenu, optional
        Where the *Landmark registration…* action goes.
    """

    def __init__(self, window, menu=None):
        super().__init__(window)
        self.window = window
        self.tool: LandmarkTool | None = None
        self.dock: QDockWidget | None = None
        self.panel: LandmarkPanel | None = None
        self.fit: LandmarkFit | None = None
        self._saved_tools: list = []
        self.action = QAction("&Landmark registration…", window)
        self.action.setCheckable(True)
        self.action.setStatusTip("Register the right pane onto the left by matching points")
        self.action.toggled.connect(lambda on: self.start() if on else self.stop())
        if menu is not None:
            menu.addAction(self.action)
        window.slide_changed.connect(lambda _index: self.stop())  # points of another slide

    @property
    def active(self) -> bool:
        """Whether the panes are in landmark mode."""
        return self.tool is not None

    def start(self) -> bool:
        """Enter landmark mode on the two panes; whether it started (both need a slide)."""
        if self.active:
            return True
        views = self.window.views[:2]
        if len(views) < 2 or any(view.slide is None for view in views):
            self.window.show_error("Open an H&E slide and its paired IHC slide first.")
            self.action.setChecked(False)
            return False
        self.tool = LandmarkTool(*views)
        self.tool.changed.connect(self._on_changed)
        self.tool.escape.connect(self.stop)
        self._saved_tools = [view.tool for view in views]
        for view in views:
            view.tool = self.tool
            view.vector_painters.append(self.tool)
        self._show_dock()
        self.action.setChecked(True)
        self._on_changed()
        return True

    def stop(self) -> None:
        """Leave landmark mode: the panes get their previous tools back; the pairs go."""
        if not self.active:
            return
        for view, tool in zip(self.tool.views, self._saved_tools, strict=True):
            if view.tool is self.tool:  # (a new slide brings its own annotation tools)
                view.tool = tool
            view.vector_painters.remove(self.tool)
            view.update()
        self.tool = self.fit = None
        self.dock.hide()
        self.action.setChecked(False)

    def _show_dock(self) -> None:
        if self.dock is not None:
            self.dock.deleteLater()
        self.panel = LandmarkPanel(self)
        self.dock = QDockWidget("Landmarks", self.window)
        self.dock.setObjectName("landmarks_dock")
        self.dock.setWidget(self.panel)
        self.window.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.dock)
        self.dock.show()
        self.dock.raise_()

    def _on_changed(self) -> None:
        """Refit live (residuals shown) and repaint the markers."""
        problem = None
        try:
            self.fit = self.tool.fit() if len(self.tool.complete()[0]) >= 3 else None
        except Her2ViewerError as exc:
            self.fit, problem = None, str(exc)
        self.panel.refresh(self.tool.pairs, self.fit, problem)
        for view in self.tool.views:
            view.update()

    def apply_fit(self) -> bool:
        """Link the panes by the fitted affine; whether there was a fit to apply."""
        if self.fit is None:
            self.window.show_error("Pick 3 or more pairs of matching points before fitting.")
            return False
        self.window.set_pane_transform(1, self.fit.matrix)
        return True

    def save(self, path: str | Path) -> bool:
        """Write the fitted registration JSON (method ``landmarks``) atomically to ``path``.

        Errors (no fit yet, a full disk, ...) are shown in one sentence; returns whether
        the file was written.
        """
        if self.fit is None:
            self.window.show_error("Pick 3 or more pairs of matching points before saving.")
            return False
        fixed, moving = (view.slide.info.path for view in self.tool.views)
        try:
            landmark_registration(self.fit, str(moving), str(fixed)).save(path)
        except Her2ViewerError as exc:
            self.window.show_error(str(exc))
            return False
        return True

    def save_dialog(self) -> None:
        """Ask where to save the landmark registration."""
        path, _ = QFileDialog.getSaveFileName(
            self.window, "Save landmark registration", "landmarks.json", "JSON (*.json)"
        )
        if path:
            self.save(path)
