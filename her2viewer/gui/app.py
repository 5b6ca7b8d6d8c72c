"""Application set-up: the Qt application with a dark theme, the demo window, offscreen renders."""

from __future__ import annotations

import gc
import os
import sys
import time
from pathlib import Path

import numpy as np
from PySide6.QtCore import QBuffer, QByteArray, QIODevice, Qt, qInstallMessageHandler
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication, QProgressDialog

from her2viewer.gui.mainwindow import MainWindow
from her2viewer.jobs import Job
from her2viewer.outputs import write_bytes_atomic


def has_display() -> bool:
    """Whether a window can be shown (a display exists and Qt is not forced offscreen)."""
    if os.environ.get("QT_QPA_PLATFORM", "") == "offscreen":
        return False
    if sys.platform in ("win32", "darwin"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


GUI_SWITCH_INTERVAL = 0.001
#: A background task longer than this (s) shows a progress dialog over the window.
SPLASH_AFTER_S = 0.3
#: Text of controls that cannot act now (the dark theme drew them like enabled ones).
DISABLED_TEXT = QColor(115, 117, 122)
#: Check boxes (the toolbar's, the layer list's) drawn with a visible box when unticked.
INDICATORS = """
QCheckBox::indicator, QAbstractItemView::indicator {
    width: 12px; height: 12px; border: 1px solid rgb(170, 172, 178); border-radius: 2px;
    background: rgb(32, 34, 37);
}
QCheckBox::indicator:checked, QAbstractItemView::indicator:checked {
    background: rgb(42, 130, 218); border-color: rgb(225, 225, 225);
}
"""
#: Warnings of Qt's offscreen platform that say nothing to a user.
_QUIET = ("This plugin does not support propagateSizeHints()",)


def _message_handler(mode, context, message: str) -> None:
    if message not in _QUIET:
        print(message, file=sys.stderr)


def make_app(offscreen: bool = False) -> QApplication:
    """Return the QApplication (created once) with the dark Fusion theme."""
    if offscreen and QApplication.instance() is None:
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
    qInstallMessageHandler(_message_handler)
    # what is alive now (modules, torch, Qt) leaves the collector's view: a full collection
    # walking it stalled the GUI thread ~30 ms in the middle of panning
    gc.freeze()
    # Qt would split large fills and blits over its own pool threads; the tile workers
    # already use the cores, so the GUI thread waited for those threads every frame
    os.environ.setdefault("QT_NO_GUI_THREADPOOL", "1")
    # hand the GIL back to the GUI thread sooner when tile workers run Python code
    sys.setswitchinterval(GUI_SWITCH_INTERVAL)
    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("her2viewer")
    app.setStyle("Fusion")
    palette = QPalette()
    roles = {
        QPalette.ColorRole.Window: QColor(45, 47, 51),
        QPalette.ColorRole.WindowText: QColor(225, 225, 225),
        QPalette.ColorRole.Base: QColor(32, 34, 37),
        QPalette.ColorRole.AlternateBase: QColor(45, 47, 51),
        QPalette.ColorRole.Text: QColor(225, 225, 225),
        QPalette.ColorRole.Button: QColor(55, 57, 62),
        QPalette.ColorRole.ButtonText: QColor(225, 225, 225),
        QPalette.ColorRole.Highlight: QColor(42, 130, 218),
        QPalette.ColorRole.HighlightedText: QColor(255, 255, 255),
        QPalette.ColorRole.ToolTipBase: QColor(45, 47, 51),
        QPalette.ColorRole.ToolTipText: QColor(225, 225, 225),
    }
    for role, color in roles.items():
        palette.setColor(role, color)
    for role in (
        QPalette.ColorRole.ButtonText,
        QPalette.ColorRole.WindowText,
        QPalette.ColorRole.Text,
    ):
        palette.setColor(QPalette.ColorGroup.Disabled, role, DISABLED_TEXT)
    app.setPalette(palette)
    app.setStyleSheet(INDICATORS)
    return app


def settle(window: MainWindow, timeout: float = 20.0) -> bool:
    """Process events until every pane has drawn its visible tiles at the right level.

    Returns whether that happened before ``timeout`` seconds.
    """
    app = QApplication.instance()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        app.processEvents()
        if all(v.fully_loaded() for v in window.views) and window.loader.pending() == 0:
            app.processEvents()
            return True
        time.sleep(0.005)
    return False


def window_image(window: MainWindow, image_format: str = "PNG") -> bytes:
    """Return the window as drawn now, encoded as ``image_format`` (empty when encoding fails)."""
    data = QByteArray()
    buffer = QBuffer(data)
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    if not window.grab().save(buffer, image_format):
        return b""
    return data.data()


def screenshot(window: MainWindow, path: str | Path, timeout: float = 20.0) -> Path:
    """Wait for the panes to load, then save the whole window as a PNG, atomically."""
    settle(window, timeout)
    return write_bytes_atomic(path, window_image(window))


def prepare_demo_case(window: MainWindow | None = None) -> Path:
    """The demo case folder, generated on a worker on the first run (about 25 s) while the
    window stays drawn under a progress dialog that counts the seconds.

    Raises what the generation raised.
    """
    from her2viewer.demo import ensure_demo_case

    return run_with_progress(
        lambda _context: ensure_demo_case(),
        "Generating the synthetic demo case (first run only, about half a minute)",
        window,
    )


def run_with_progress(work, text: str, parent=None):
    """Run ``work(context)`` on a worker, keep the GUI drawing, and show a busy dialog with
    the elapsed seconds when it takes longer than :data:`SPLASH_AFTER_S`; return its result."""
    job = Job(work, "startup").start()
    app, dialog, start = QApplication.instance(), None, time.monotonic()
    while job.state == "running":
        elapsed = time.monotonic() - start
        if dialog is None and elapsed > SPLASH_AFTER_S:
            dialog = QProgressDialog(text, None, 0, 0, parent)  # busy: no fake percentage
            dialog.setWindowTitle("her2viewer")
            dialog.setWindowModality(Qt.WindowModality.WindowModal)
            dialog.setMinimumDuration(0)
            dialog.show()
        if dialog is not None:
            dialog.setLabelText(f"{text}… {elapsed:.0f} s")
        app.processEvents()
        time.sleep(0.03)
    if dialog is not None:
        dialog.close()
        dialog.deleteLater()
    return job.wait()


def demo_window(window: MainWindow, case_dir: Path) -> None:
    """Load the demo case into ``window``: H&E left, IHC right, synced by the known transform.

    The transform is the synthetic case's ``truth.json`` ``transform_ihc_to_he``
    (level-0 IHC px -> level-0 H&E px); real pairs will get theirs from registration.
    """
    from her2viewer.overlay.demo import demo_layers
    from her2viewer.slide.synthetic import load_truth

    truth = load_truth(case_dir)
    he_layers, ihc_layers = demo_layers(case_dir)
    window.open_slides(
        [case_dir / truth["he_path"], case_dir / truth["ihc_path"]],
        np.asarray(truth["transform_ihc_to_he"], float),
    ).wait()  # the layers go onto the opened slides
    for layer in he_layers:
        window.add_layer(layer, 0)
    for layer in ihc_layers:
        window.add_layer(layer, 1)
    window.set_active(window.views[0])
