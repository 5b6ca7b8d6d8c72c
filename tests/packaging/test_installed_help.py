"""Help > User guide works in an installed wheel as in the checkout: the guide is package data."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

import her2viewer
from her2viewer.gui.help import GUIDE_PAGE, HelpActions

REPO = Path(__file__).resolve().parents[2]
GUIDE = REPO / "her2viewer" / "guide"

pytestmark = pytest.mark.slow

#: Run inside the extracted wheel: a window with a Help menu, then Help > User guide.
OPEN_GUIDE = """
import json
from PySide6.QtWidgets import QApplication, QMainWindow
from her2viewer.gui.help import GUIDE_PAGE, HelpActions
app = QApplication([])
window = QMainWindow()
menu = window.menuBar().addMenu("Help")
about = menu.addAction("About")
actions = HelpActions(window, menu, about)
dialog = actions.show_guide()
print(json.dumps({
    "page": str(GUIDE_PAGE),
    "enabled": actions.guide_action.isEnabled(),
    "source": dialog.browser.source().toLocalFile(),
    "text": dialog.browser.toPlainText()[:2000],
}))
"""


def _guide_files() -> list[str]:
    return sorted(p.relative_to(GUIDE).as_posix() for p in GUIDE.rglob("*") if p.is_file())


def test_the_help_menu_opens_the_packaged_guide_in_a_checkout(qtbot):
    from PySide6.QtWidgets import QMainWindow

    window = QMainWindow()
    qtbot.addWidget(window)
    menu = window.menuBar().addMenu("Help")
    actions = HelpActions(window, menu, menu.addAction("About"))
    assert GUIDE_PAGE == GUIDE / "pathologist.md"
    assert actions.guide_action.isEnabled()
    dialog = actions.show_guide()
    assert Path(dialog.browser.source().toLocalFile()) == GUIDE_PAGE
    dialog.close()


def test_wheel_and_sdist_carry_every_page_and_picture_of_the_guide(dist):
    (wheel,) = dist.glob("her2viewer-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    shipped = sorted(n.removeprefix("her2viewer/guide/") for n in names if "/guide/" in n)
    assert shipped == _guide_files()
    assert "pathologist.md" in shipped and "img/demo.png" in shipped
    (sdist,) = dist.glob("her2viewer-*.tar.gz")
    prefix = f"her2viewer-{her2viewer.__version__}/her2viewer/guide/"
    with tarfile.open(sdist) as archive:
        names = [m.name.removeprefix(prefix) for m in archive if m.isfile()]
    assert set(_guide_files()) <= set(names)


def test_help_user_guide_is_enabled_and_opens_the_guide_from_an_installed_wheel(dist, tmp_path):
    (wheel,) = dist.glob("her2viewer-*.whl")
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    env = {**os.environ, "PYTHONPATH": str(site), "QT_QPA_PLATFORM": "offscreen"}
    result = subprocess.run(
        [sys.executable, "-c", OPEN_GUIDE], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-3000:]
    opened = json.loads(result.stdout.strip().splitlines()[-1])
    page = site / "her2viewer" / "guide" / "pathologist.md"
    assert opened["page"] == str(page)
    assert opened["enabled"]
    assert opened["source"] == str(page)
    assert "pathologist" in opened["text"].lower()
