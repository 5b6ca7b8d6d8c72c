"""The test suite needs nothing outside the project: its real files live in tests/data/."""

from __future__ import annotations

import re
from fnmatch import fnmatch
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
DATA = TESTS / "data"
#: How a test would reach the sibling ``shared`` folder of a development checkout.
OUTSIDE = re.compile(r"""\.\./shared|/\s*["']shared["']|["']shared["']\s*/""")


def _data_files() -> list[str]:
    return sorted(
        p.relative_to(DATA).as_posix()
        for p in DATA.rglob("*")
        if p.is_file() and p.name != "README.md"
    )


def test_no_test_reads_the_shared_folder_beside_the_checkout():
    offenders = [
        f"{path.relative_to(TESTS)}:{number}"
        for path in sorted(TESTS.rglob("*.py"))
        if path != Path(__file__).resolve()
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if OUTSIDE.search(line)
    ]
    assert offenders == []


def test_the_real_test_files_are_in_the_project():
    assert {"cmu-1-small-region.svs", "radiomics/breast1_image.nrrd"} <= set(_data_files())


def test_data_readme_names_every_file_and_only_files_that_exist():
    readme = (DATA / "README.md").read_text()
    table = [line for line in readme.splitlines() if line.startswith("| `")]
    names = [name for line in table for name in re.findall(r"`([^`]+)`", line.split("|")[1])]
    files = _data_files()
    assert [f for f in files if not any(fnmatch(f, name) for name in names)] == []
    assert [name for name in names if not any(fnmatch(f, name) for f in files)] == []
    assert all(row.count("|") >= 5 and row.split("|")[4].strip() for row in table)  # a licence


def test_the_bsd_licence_sits_beside_the_pyradiomics_files():
    licence = (DATA / "radiomics" / "LICENSE.txt").read_text()
    assert "Harvard Medical School" in licence and "Redistribution" in licence


def test_tests_packaging_does_not_hide_the_packaging_library():
    # tests/ is on sys.path during a run: a tests/packaging/__init__.py would shadow this import
    from packaging.version import Version

    assert Version("1.10") > Version("1.9")


def test_no_test_module_imports_another_so_each_file_runs_alone():
    # a helper shared by two folders goes into a conftest.py as a fixture, not `from test_x import`
    sibling = re.compile(r"^\s*(from|import)\s+test_\w+", re.MULTILINE)
    offenders = [
        str(path.relative_to(TESTS))
        for path in sorted(TESTS.rglob("test_*.py"))
        if sibling.search(path.read_text())
    ]
    assert offenders == []
