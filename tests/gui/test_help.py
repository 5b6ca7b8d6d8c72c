"""Help: the shortcuts sheet made from the window's actions, the user guide, About, and a
tooltip on every control saying what it does (and, disabled, why) (issue 19)."""

import numpy as np
import pytest

pytest.importorskip("PySide6")

from PySide6.QtGui import QAction  # noqa: E402
from PySide6.QtWidgets import QAbstractButton, QDockWidget, QToolBar  # noqa: E402

from her2viewer.gui.help import PANE_KEYS, shortcut_rows  # noqa: E402
from her2viewer.overlay import HeatmapLayer  # noqa: E402


def _plain(text: str) -> str:
    return text.replace("&", "").rstrip("…").strip()


def _inside_pyqtgraph(widget) -> bool:
    while widget is not None:
        if type(widget).__module__.startswith("pyqtgraph"):
            return True
        widget = widget.parentWidget()
    return False


def _attach_every_panel(window):
    """The window as `her2viewer view` builds it: every analysis and page attached."""
    from her2viewer.gui.cells_panel import attach_cells_panel
    from her2viewer.gui.clam_panel import attach_clam_panel
    from her2viewer.gui.evaluation_panel import attach_evaluation_panel
    from her2viewer.gui.grading_panel import attach_grading_panel
    from her2viewer.gui.her2net_panel import attach_her2net_panel
    from her2viewer.gui.ihc_panel import attach_ihc_panel
    from her2viewer.gui.radiology_panel import attach_radiology_panel

    for attach in (
        attach_her2net_panel,
        attach_ihc_panel,
        attach_clam_panel,
        attach_grading_panel,
        attach_cells_panel,
        attach_radiology_panel,
        attach_evaluation_panel,
    ):
        attach(window)


def test_the_shortcuts_sheet_lists_every_key_of_every_action(panel_window):
    window = panel_window
    rows = shortcut_rows(window)
    listed = {keys for _what, keys in rows}
    keyed = [a for a in window.findChildren(QAction) if not a.shortcut().isEmpty()]
    assert keyed and all(a.shortcut().toString() in listed for a in keyed)
    what = dict((keys, name) for name, keys in rows)
    assert what["]"] == "View ▸ Rotate ▸ Rotate clockwise 5°"
    assert what["Ctrl+Z"] == "Edit ▸ Undo"
    assert set(PANE_KEYS) <= set(rows)  # the keys no action carries (hold Z, Home, ...)
    dialog = window.help.show_shortcuts()
    assert dialog.table.rowCount() == len(rows)
    assert dialog.table.item(0, 0).text() == rows[0][0]
    dialog.close()


def test_help_menu_has_shortcuts_guide_and_about(panel_window):
    window = panel_window
    help_menu = window.menuBar().actions()[-1].menu()
    texts = [_plain(a.text()) for a in help_menu.actions() if not a.isSeparator()]
    assert texts == ["Keyboard shortcuts", "User guide", "About her2viewer"]
    assert window.help.guide_action.isEnabled()  # the guide is package data
    guide = window.help.show_guide()
    assert "pathologist" in guide.browser.toPlainText().lower()
    guide.close()


def test_every_control_says_what_it_does_and_why_it_is_disabled(panel_window, synthetic_case):
    window = panel_window
    _attach_every_panel(window)
    assert window.open_in_pane(synthetic_case / "he.svs", 0).wait()
    window.add_layer(HeatmapLayer("scores", values=np.ones((4, 4)), downsample=500), 0)
    # Qt's own show/hide entries of docks and toolbars are named after them: not controls
    panels = window.findChildren(QDockWidget) + window.findChildren(QToolBar)
    qt_made = {id(bar.toggleViewAction()) for bar in panels}
    silent = []
    for action in window.findChildren(QAction):
        if action.isSeparator() or not action.text() or action.menu() is not None:
            continue
        if id(action) in qt_made:
            continue
        tip = action.statusTip() or action.toolTip()
        if _plain(tip) == _plain(action.text()):  # Qt's default tooltip is the bare text
            silent.append(f"action {action.text()!r}")
    for button in window.findChildren(QAbstractButton):
        if _inside_pyqtgraph(button):  # its image view's own ROI/Menu/normalisation buttons
            continue
        if button.text() and not (button.toolTip() or button.statusTip()):
            silent.append(f"button {button.text()!r} in {type(button.parent()).__name__}")
    assert silent == [], "\n".join(silent)
    toggles = window.overlay_keys.toggles
    assert toggles[0].isEnabled() and "'scores'" in toggles[0].toolTip()
    assert not toggles[1].isEnabled() and toggles[1].toolTip().startswith("Disabled:")
