"""The desktop bundle's spec, the Linux desktop files and their install script, Help > About."""

from __future__ import annotations

import ast
import configparser
import os
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGING = ROOT / "packaging"
LINUX = PACKAGING / "linux"
MIME_NS = "{http://www.freedesktop.org/standards/shared-mime-info}"
#: Every slide suffix a file manager should open in her2viewer.
SLIDE_SUFFIXES = (".svs", ".ndpi", ".mrxs", ".scn", ".bif", ".tif", ".tiff", ".dcm")
#: The system's own types (shared-mime-info) for the suffixes our XML does not declare.
SYSTEM_TYPES = {".tif": "image/tiff", ".tiff": "image/tiff", ".dcm": "application/dicom"}
ICON_SIZES = (16, 24, 32, 48, 64, 128, 256)


def _desktop_entry() -> configparser.SectionProxy:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # keys are case-sensitive
    parser.read(LINUX / "her2viewer.desktop", encoding="utf-8")
    return parser["Desktop Entry"]


def _mime_globs() -> dict[str, str]:
    """Map each glob suffix of our MIME XML to its type."""
    root = ET.parse(LINUX / "her2viewer-mime.xml").getroot()
    assert root.tag == f"{MIME_NS}mime-info"
    return {
        glob.get("pattern").removeprefix("*"): mime.get("type")
        for mime in root.iter(f"{MIME_NS}mime-type")
        for glob in mime.iter(f"{MIME_NS}glob")
    }


def test_spec_is_python_and_builds_the_one_folder_app():
    source = (PACKAGING / "her2viewer.spec").read_text(encoding="utf-8")
    tree = ast.parse(source)
    called = {
        node.func.id
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
    }
    assert {"Analysis", "PYZ", "EXE", "COLLECT", "BUNDLE"} <= called
    assert "exclude_binaries=True" in source  # one folder, not one file
    assert (PACKAGING / "pyi_rth_torchvision_cpu.py").is_file()
    ast.parse((PACKAGING / "pyi_rth_torchvision_cpu.py").read_text(encoding="utf-8"))


def test_desktop_entry_opens_every_slide_format():
    entry = _desktop_entry()
    assert entry["Type"] == "Application"
    assert entry["Exec"].startswith("her2viewer view ") and entry["Exec"].endswith("%F")
    assert entry["Icon"] == "her2viewer"
    declared = set(filter(None, entry["MimeType"].split(";")))
    types = {**SYSTEM_TYPES, **_mime_globs()}
    for suffix in SLIDE_SUFFIXES:
        assert suffix in types, f"no MIME type for {suffix}"
        assert types[suffix] in declared, f"{suffix} ({types[suffix]}) not in MimeType"


@pytest.mark.skipif(not shutil.which("desktop-file-validate"), reason="desktop-file-utils absent")
def test_desktop_entry_passes_desktop_file_validate():
    result = subprocess.run(
        ["desktop-file-validate", str(LINUX / "her2viewer.desktop")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout


def test_icons_parse_and_have_every_size():
    svg = ET.parse(LINUX / "icons" / "her2viewer.svg").getroot()
    assert svg.tag == "{http://www.w3.org/2000/svg}svg"
    for size in ICON_SIZES:
        png = (LINUX / "icons" / f"her2viewer-{size}.png").read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
        assert (width, height) == (size, size)


def test_install_script_fills_and_empties_the_users_share(tmp_path):
    home = tmp_path / "home"
    program = tmp_path / "bundle dir" / "her2viewer"
    program.parent.mkdir()
    program.write_text("#!/bin/sh\n")
    program.chmod(0o755)
    env = {"HOME": str(home), "PATH": os.environ["PATH"]}
    script = str(LINUX / "install.sh")
    subprocess.run(["bash", script, str(program)], env=env, check=True, capture_output=True)
    share = home / ".local" / "share"
    desktop = (share / "applications" / "her2viewer.desktop").read_text(encoding="utf-8")
    assert f'Exec="{program}" view %F' in desktop
    assert (share / "mime" / "packages" / "her2viewer-mime.xml").is_file()
    icons = share / "icons" / "hicolor"
    assert (icons / "scalable" / "apps" / "her2viewer.svg").is_file()
    for size in ICON_SIZES:
        assert (icons / f"{size}x{size}" / "apps" / "her2viewer.png").is_file()
    subprocess.run(["bash", script, "--uninstall"], env=env, check=True, capture_output=True)
    assert not list(share.rglob("her2viewer*"))


def test_install_script_refuses_a_missing_program(tmp_path):
    env = {"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        ["bash", str(LINUX / "install.sh"), str(tmp_path / "none")],
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "her2viewer" in result.stderr
    assert not (tmp_path / ".local").exists()


def test_help_about_shows_version_licences_and_demo_statement(qtbot, tmp_path):
    pytest.importorskip("PySide6")
    from PySide6.QtCore import QSettings

    from her2viewer import __version__
    from her2viewer.gui.about import AboutDialog
    from her2viewer.gui.mainwindow import MainWindow
    from her2viewer.gui.tiles import TileCache, TileLoader

    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    loader = TileLoader(TileCache(8), workers=1)
    window = MainWindow(loader, settings)
    qtbot.addWidget(window)
    help_menu = window.menuBar().actions()[-1]
    assert help_menu.text() == "&Help"
    assert window.about_action in help_menu.menu().actions()
    window.about_action.trigger()
    dialog = window.findChild(AboutDialog)
    assert dialog is not None and dialog.isVisible()
    text = dialog.text.toPlainText()
    assert f"her2viewer {__version__}" in text
    assert "synthetic" in text and "no clinical claim" in text
    for licence in ("LGPL-3.0", "LGPL-2.1", "BSD-3-Clause", "CC0", "MIT"):
        assert licence in text
    dialog.close()
    loader.shutdown()
