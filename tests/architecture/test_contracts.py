"""The import-linter contracts of pyproject.toml hold on the real tree and catch a Qt import.

DESIGN.md rule 8: the layer order and "Qt only in gui/" are checked by ``lint-imports``
(``make lint``); these tests show both that the tree passes and that the check bites.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
QT_CONTRACT = "Only gui/ imports Qt (PySide6, pyqtgraph)"


def _lint_imports(cwd: Path) -> subprocess.CompletedProcess:
    """Run lint-imports on the package found in ``cwd`` with the pyproject.toml there."""
    if not LINT_IMPORTS.exists():
        pytest.fail(f"{LINT_IMPORTS} is missing: install the test extras (import-linter).")
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "pyproject.toml"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_tree_keeps_every_contract():
    result = _lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_a_qt_import_in_slide_breaks_the_forbidden_contract(tmp_path):
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    shutil.copytree(
        ROOT / "her2viewer", tmp_path / "her2viewer", ignore=shutil.ignore_patterns("__pycache__")
    )
    base = tmp_path / "her2viewer" / "slide" / "base.py"
    base.write_text(base.read_text() + "\nimport PySide6  # noqa: E402\n")
    result = _lint_imports(tmp_path)
    assert result.returncode != 0
    assert f"{QT_CONTRACT} BROKEN" in result.stdout
    assert "her2viewer.slide.base -> PySide6" in result.stdout
