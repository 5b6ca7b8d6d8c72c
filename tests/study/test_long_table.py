"""One long table of a study's answers: `study export --format long` and `study mrmc --long-csv`
write the same columns from one builder; the study package imports no other module's private
names."""

from __future__ import annotations

import ast
import csv
from pathlib import Path

import pytest

import her2viewer.study
from her2viewer.cli import main
from her2viewer.stats.mrmc import COLUMNS, read_ratings
from her2viewer.study.exports import LONG_COLUMNS
from her2viewer.study.reading import ReadingSession
from her2viewer.study.stats import model_score
from tests.study_util import make_study

READERS = ("ann", "ben", "cat")
#: Confidence (0-100) of a positive case per reader and case position: every answer rated.
CONFIDENCE = (90, 20, 75, 35, 60, 10, 85, 45)


def _study(folder: Path, arms: tuple[str, ...]) -> Path:
    path = make_study(folder, n=8, arms=arms, confidence="0-100")
    for shift, reader in enumerate(READERS):
        for arm in arms:
            with ReadingSession(path, reader, arm) as session:
                for position in range(session.total):
                    value = CONFIDENCE[(position + shift) % len(CONFIDENCE)]
                    answer = "positive" if value >= 50 else "negative"
                    session.answer(position, answer, value, 10.0 + position)
    return path


def _table(path: Path) -> list[dict]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _both(path: Path, folder: Path, capsys) -> tuple[list[dict], list[dict]]:
    """The long tables of `study export --format long` and `study mrmc --long-csv`."""
    export, mrmc = folder / "export.csv", folder / "mrmc.csv"
    assert main(["study", "export", str(path), "-o", str(export), "--format", "long"]) == 0
    assert main(["study", "mrmc", str(path), "--long-csv", str(mrmc)]) == 0
    capsys.readouterr()
    return _table(export), _table(mrmc)


def test_export_and_mrmc_write_the_same_long_table(tmp_path, capsys):
    path = _study(tmp_path, ("unassisted", "assisted"))
    export, mrmc = _both(path, tmp_path, capsys)
    assert list(mrmc[0]) == list(LONG_COLUMNS) and list(LONG_COLUMNS[:5]) == list(COLUMNS)
    assert mrmc == export and len(export) == 3 * 2 * 8  # readers x arms x cases
    assert all(r["seconds"] and r["answered_at"] for r in mrmc)  # the answers' own columns


def test_a_one_arm_mrmc_table_is_the_export_plus_the_model_rows(tmp_path, capsys):
    path = _study(tmp_path, ("unassisted",))
    export, mrmc = _both(path, tmp_path, capsys)
    model = [r for r in mrmc if r["modality"] == "model"]
    assert [r for r in mrmc if r["modality"] != "model"] == export
    assert len(model) == len(export) == 3 * 8  # the model rated alike for every reader
    first = next(r for r in model if r["case"] == "HER2POS_case00")
    assert first["answer"] == "negative" and float(first["rating"]) == pytest.approx(0.1269)
    assert first["truth"] == "1" and first["truth_label"] == "positive"
    assert first["confidence"] == first["revision"] == ""  # the model has no answer record
    assert len(read_ratings(tmp_path / "mrmc.csv").modalities) == 2  # read back by `study mrmc`


def test_a_ratings_csv_is_written_back_with_the_same_columns(tmp_path, capsys):
    ratings = tmp_path / "ratings.csv"
    rows = [f"r{r},m{m},c{c},{c % 2},{(c % 2) * 2 + (c + r + m) % 3}"
            for r in range(3) for m in range(2) for c in range(6)]  # fmt: skip
    ratings.write_text("\n".join(["reader,modality,case,truth,rating", *rows]) + "\n")
    out = tmp_path / "long.csv"
    assert main(["study", "mrmc", str(ratings), "--long-csv", str(out)]) == 0
    table = _table(out)
    assert list(table[0]) == list(LONG_COLUMNS) and len(table) == len(rows)
    assert {r["answer"] for r in table} == {""}  # no study: no answers to tell
    back = read_ratings(out)
    assert back.cases == read_ratings(ratings).cases


def _private_imports(module: Path) -> list[str]:
    """Names starting with ``_`` that ``module`` imports from another module."""
    tree = ast.parse(module.read_text(encoding="utf-8"))
    return [
        f"{module.name}: {node.module}.{alias.name}"
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
        if alias.name.startswith("_") and alias.name != "__future__"
    ]


def test_the_study_package_imports_no_private_name_and_model_score_is_public():
    package = Path(her2viewer.study.__file__).parent
    found = [name for module in sorted(package.glob("*.py")) for name in _private_imports(module)]
    assert found == []
    assert model_score.__doc__ and model_score.__module__ == "her2viewer.study.stats"
