"""Rotation and flip of the active pane: View menu actions with keys, and a dial.

The maths is the Qt-free viewport's (:meth:`~her2viewer.viewport.ViewState.rotated_to`,
:meth:`~her2viewer.viewport.ViewState.flipped`); a pane turns about its centre and the
panes synced with it follow through :class:`~her2viewer.gui.sync.SyncGroup`.
"""

from __future__ import annotations

from PySide6.QtCore import QObject
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QDial, QLabel, QToolBar

#: Degrees of one small and one large rotation step.
SMALL_STEP, LARGE_STEP = 5.0, 90.0
#: (label, degrees clockwise, key) of the rotation actions.
STEPS = (
    ("Rotate &clockwise 5°", SMALL_STEP, "]"),
    ("Rotate &anticlockwise 5°", -SMALL_STEP, "["),
    ("Rotate clockwise 90°", LARGE_STEP, "}"),
    ("Rotate anticlockwise 90°", -LARGE_STEP, "{"),
)


class RotationControls(QObject):
    """The window's rotation controls, acting on its active pane.

    Parameters
    ----------
    window : MainWindow
        The window (its ``active`` pane is turned).
    menu : QMenu
        Where the actions go (the View menu).
    """

    def __init__(self, window, menu) -> None:
        super().__init__(window)
        self.window = window
        self.actions: list[QAction] = []
        rotate = menu.addMenu("&Rotate")
        for label, degrees, key in STEPS:
            self._action(rotate, label, lambda d=degrees: self.rotate_by(d), key)
        self.reset_action = self._action(rotate, "&Reset rotation", self.reset, "\\")
        self.flip_action = self._action(rotate, "&Flip horizontally", self.flip, "Shift+F")
        self.flip_action.setCheckable(True)
        self.dial = QDial()
        self.dial.setRange(0, 359)
        self.dial.setWrapping(True)
        self.dial.setNotchesVisible(True)
        self.dial.setFixedSize(28, 28)  # the toolbar keeps its height
        self.dial.setToolTip("Rotation of the active pane, degrees clockwise ([ ] 5°, { } 90°)")
        self.dial.valueChanged.connect(self._on_dial)
        self.label = QLabel("0°")
        self.label.setMinimumWidth(34)
        self.label.setToolTip("Rotation of the active pane")
        toolbar = QToolBar("Rotation")
        toolbar.setObjectName("rotation")
        toolbar.addWidget(self.dial)
        toolbar.addWidget(self.label)
        toolbar.addAction(self.flip_action)
        window.addToolBar(toolbar)
        self.toolbar = toolbar
        self._tips = {w: w.toolTip() for w in (self.dial, *self.actions)}
        self.follow(None)

    def _action(self, menu, text: str, slot, key: str) -> QAction:
        action = QAction(text, self.window)
        action.setShortcut(QKeySequence(key))
        tip = f"{text.replace('&', '')} the active pane about its centre ({key})"
        action.setToolTip(tip)
        action.setStatusTip(tip)
        action.triggered.connect(lambda _checked=False: slot())
        menu.addAction(action)
        self.actions.append(action)
        return action

    @property
    def view(self):
        """The pane turned, None when the active pane shows no slide."""
        view = self.window.active
        return view if view is not None and view.slide is not None else None

    def rotate_to(self, degrees: float) -> None:
        """Turn the active pane to ``degrees`` clockwise (0-360) about its centre."""
        if self.view is not None:
            self.view.set_state(self.view.state.rotated_to(degrees))

    def rotate_by(self, degrees: float) -> None:
        """Turn the active pane by ``degrees`` (positive: clockwise)."""
        if self.view is not None:
            self.rotate_to(self.view.state.rotation_degrees + degrees)

    def reset(self) -> None:
        """Show the active pane unrotated (its flip stays)."""
        self.rotate_to(0.0)

    def flip(self) -> None:
        """Mirror the active pane left-right (again: back)."""
        if self.view is not None:
            self.view.set_state(self.view.state.flipped())

    def follow(self, view) -> None:
        """Show ``view``'s rotation and flip on the controls (the window calls this when the
        active pane moves or changes); disabled, saying why, without a slide."""
        enabled = view is not None and view.slide is not None
        for widget, tip in self._tips.items():
            widget.setEnabled(enabled)
            widget.setToolTip(tip if enabled else f"{tip} (disabled: open a slide first)")
        if not enabled:
            return
        degrees = view.state.rotation_degrees
        self.dial.blockSignals(True)
        self.dial.setValue(round(degrees) % 360)
        self.dial.blockSignals(False)
        self.label.setText(f"{degrees:.0f}°")
        self.flip_action.setChecked(view.state.flip)

    def _on_dial(self, value: int) -> None:
        if self.view is not None and round(self.view.state.rotation_degrees) % 360 != value:
            self.rotate_to(float(value))
