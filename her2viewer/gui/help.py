"""The Help menu: a keyboard shortcuts sheet made from the window's own actions, the user
guide, and About (:mod:`her2viewer.gui.about`).

The sheet is generated when it opens, from every action of the window that has a key
(menus, toolbars, tools), with its menu path, plus the keys the panes understand without
an action (:data:`PANE_KEYS`), so it never disagrees with what the keys do.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from PySide6.QtCore import QObject, QUrl
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QHeaderView,
    QTableWidget,
    QTableWidgetItem,
    QTextBrowser,
    QVBoxLayout,
)

#: Keys and gestures of a slide pane that no action carries: (what, keys).
PANE_KEYS = (
    ("Pane ▸ Pan", "Arrow keys, or drag"),
    ("Pane ▸ Zoom in / out", "+ / −, the wheel, double-click (Shift: out)"),
    ("Pane ▸ Fit the whole slide", "Home"),
    ("Pane ▸ Magnifier, 4x under the cursor", "Hold Z"),
    ("Pane ▸ Pane menu (sync, fit, annotations)", "Right click"),
)
#: The page of the user guide the Help menu opens: the guide is package data
#: (her2viewer/guide/), found the same way in a checkout, a wheel and the desktop bundle.
GUIDE_PAGE = Path(str(files("her2viewer") / "guide" / "pathologist.md"))


def _plain(text: str) -> str:
    return text.replace("&&", "\0").replace("&", "").replace("\0", "&").rstrip("…").strip()


def _menu_paths(window) -> dict[QAction, str]:
    """Each action reachable from the menu bar with its menu path ("View ▸ Rotate ▸ …")."""
    paths: dict[QAction, str] = {}

    def walk(menu, prefix: str) -> None:
        for action in menu.actions():
            if action.menu() is not None:
                walk(action.menu(), f"{prefix}{_plain(action.text())} ▸ ")
            elif action.text():
                paths.setdefault(action, prefix + _plain(action.text()))

    walk(window.menuBar(), "")
    return paths


def shortcut_rows(window) -> list[tuple[str, str]]:
    """``(what, keys)`` of every key the window knows: its actions with keys (by menu
    path; actions outside the menus by their text), then :data:`PANE_KEYS`."""
    paths = _menu_paths(window)
    rows = []
    for action in [*paths, *(a for a in window.findChildren(QAction) if a not in paths)]:
        keys = [k.toString(QKeySequence.SequenceFormat.NativeText) for k in action.shortcuts()]
        keys = [k for k in keys if k]
        if keys and (what := paths.get(action, _plain(action.text()))):
            rows.append((what, ", ".join(keys)))
    return list(dict.fromkeys(rows)) + list(PANE_KEYS)


class ShortcutsDialog(QDialog):
    """Help > Keyboard shortcuts: one table row per key, made from the window's actions."""

    def __init__(self, window) -> None:
        super().__init__(window)
        self.setWindowTitle("Keyboard shortcuts — her2viewer")
        rows = shortcut_rows(window)
        self.table = QTableWidget(len(rows), 2)
        self.table.setHorizontalHeaderLabels(["Action", "Keys"])
        for row, (what, keys) in enumerate(rows):
            self.table.setItem(row, 0, QTableWidgetItem(what))
            self.table.setItem(row, 1, QTableWidgetItem(keys))
        self.table.verticalHeader().hide()
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.table)
        layout.addWidget(buttons)
        self.resize(620, 640)


class GuideDialog(QDialog):
    """Help > User guide: the bundled guide's pages (Markdown), links followed inside."""

    def __init__(self, window, page: Path = GUIDE_PAGE) -> None:
        super().__init__(window)
        self.setWindowTitle("User guide — her2viewer")
        self.browser = QTextBrowser()
        self.browser.setOpenExternalLinks(True)
        self.browser.setSource(QUrl.fromLocalFile(str(page)))
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.browser)
        layout.addWidget(buttons)
        self.resize(860, 720)


class HelpActions(QObject):
    """Keyboard shortcuts and User guide, put above About in the Help menu."""

    def __init__(self, window, menu, before: QAction) -> None:
        super().__init__(window)
        self.window = window
        self.shortcuts_action = QAction("&Keyboard shortcuts", window)
        self.shortcuts_action.setShortcut(QKeySequence("F1"))
        self.shortcuts_action.setToolTip("Every key the viewer knows, made from its menus (F1)")
        self.shortcuts_action.triggered.connect(lambda _checked=False: self.show_shortcuts())
        self.guide_action = QAction("&User guide", window)
        self.guide_action.triggered.connect(lambda _checked=False: self.show_guide())
        if GUIDE_PAGE.is_file():
            self.guide_action.setToolTip("Open the pathologist's guide to the viewer")
        else:
            self.guide_action.setEnabled(False)
            self.guide_action.setToolTip(
                "Disabled: this installation carries no user guide (her2viewer/guide/)"
            )
        for action in (self.shortcuts_action, self.guide_action):
            action.setStatusTip(action.toolTip())
            menu.insertAction(before, action)
        menu.insertSeparator(before)

    def show_shortcuts(self) -> ShortcutsDialog:
        """Open the shortcuts sheet (not modal) and return it."""
        dialog = ShortcutsDialog(self.window)
        dialog.open()
        return dialog

    def show_guide(self) -> GuideDialog:
        """Open the user guide (not modal) and return it."""
        dialog = GuideDialog(self.window)
        dialog.open()
        return dialog
