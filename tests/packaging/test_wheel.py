"""The sdist and the wheel carry the application: package, demo bundles, entry point, version."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

import her2viewer
from her2viewer import paths

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def _resources() -> list[str]:
    root = paths.RESOURCES_DIR
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def test_wheel_carries_every_resource_inside_the_package(dist):
    (wheel,) = dist.glob("her2viewer-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    shipped = sorted(n.removeprefix("her2viewer/resources/") for n in names if "/resources/" in n)
    assert shipped == _resources()
    assert "her2viewer/py.typed" in names
    info = f"her2viewer-{her2viewer.__version__}.dist-info"
    assert zipfile.ZipFile(wheel).read(f"{info}/top_level.txt").split() == [b"her2viewer"]
    entry = zipfile.ZipFile(wheel).read(f"{info}/entry_points.txt").decode()
    assert "her2viewer = her2viewer.cli:main" in entry


def test_sdist_carries_the_resources_the_wheel_is_built_from(dist):
    (sdist,) = dist.glob("her2viewer-*.tar.gz")
    prefix = f"her2viewer-{her2viewer.__version__}/resources/"
    with tarfile.open(sdist) as archive:
        names = [m.name.removeprefix(prefix) for m in archive if m.isfile()]
    assert set(_resources()) <= set(names)


def test_resources_found_in_the_checkout_and_in_an_installed_wheel(dist, tmp_path):
    assert paths.RESOURCES_DIR == REPO / "resources"
    (wheel,) = dist.glob("her2viewer-*.whl")
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    code = "from her2viewer.paths import RESOURCES_DIR; print(RESOURCES_DIR)"
    env = {**os.environ, "PYTHONPATH": str(site)}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    found = Path(result.stdout.strip())
    assert found == site / "her2viewer" / "resources"
    assert (found / "models" / "clam_synthetic_demo" / "bundle.json").is_file()


def test_changelog_starts_at_the_current_version_with_an_unreleased_section():
    text = (REPO / "CHANGELOG.md").read_text()
    versions = re.findall(r"^## \[([^\]]+)\]", text, flags=re.MULTILINE)
    assert versions[0] == "Unreleased"
    assert her2viewer.__version__ in versions


def test_the_version_is_written_once_and_the_wheel_reads_it(dist):
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert "version" not in project and "version" in project["dynamic"]
    (wheel,) = dist.glob("her2viewer-*.whl")
    info = f"her2viewer-{her2viewer.__version__}.dist-info/METADATA"
    assert f"Version: {her2viewer.__version__}\n" in zipfile.ZipFile(wheel).read(info).decode()
