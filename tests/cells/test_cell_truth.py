"""Cell-truth cohorts: cases written with the class of every cell, their guideline category,
the engine measured on them, and the evaluation report's arithmetic."""

from __future__ import annotations

import csv
from dataclasses import fields

import cv2
import numpy as np
import pytest
from scipy import ndimage

from her2viewer.cells import rules
from her2viewer.cells.detect import fill_holes
from her2viewer.cells.engine import Cells
from her2viewer.cells.evaluate import evaluate_case, evaluate_cohort, score_cells, summarise
from her2viewer.cells.measure import CellTable
from her2viewer.cells.truth import cell_case_specs, read_cell_truth, write_cell_cohort
from her2viewer.cli.main import main
from tests.reliability.conftest import leftovers, one_line_error, tiny_disk  # noqa: F401

EXPECTED = {
    "null": ("0", "HER2-null"),
    "ultralow": ("0", "HER2-ultralow"),
    "1+": ("1+", "HER2-low"),
    "2+": ("2+", "HER2-equivocal (HER2-low if ISH is not amplified)"),
    "3+": ("3+", "HER2-positive"),
}


@pytest.fixture(scope="module")
def her2_cohort(tmp_path_factory):
    return write_cell_cohort(tmp_path_factory.mktemp("cells") / "her2", 5, "her2", 3, (1024, 768))


def _rows(labels):
    with labels.open() as handle:
        return {row["kind"]: row for row in csv.DictReader(handle)}


def test_her2_cohort_has_every_category_and_its_truth(her2_cohort):
    rows = _rows(her2_cohort)
    assert set(rows) == set(EXPECTED)
    for kind, row in rows.items():
        truth, xy, classes = read_cell_truth(her2_cohort.parent / row["case_id"])
        assert len(xy) == len(classes) == truth["n_cells"] == int(row["n_cells"]) > 300
        # the category is the guideline's reading of the true classes, computed here apart
        c = np.bincount(classes, minlength=4)
        decision = rules.her2_breast(int(c[1]), int(c[2]), int(c[3]), len(classes))
        assert (decision.category, decision.label) == EXPECTED[kind]
        assert (row["category"], row["label"]) == EXPECTED[kind]
        assert truth["decision"]["category"] == decision.category
        assert (xy >= 0).all() and (xy[:, 0] < 1024).all() and (xy[:, 1] < 768).all()
    ultralow = read_cell_truth(her2_cohort.parent / rows["ultralow"]["case_id"])[2]
    assert 0 < np.count_nonzero(ultralow == 1) <= 0.1 * len(ultralow)


def test_case_mixes_stay_inside_their_category():
    for marker, labels in (("ki67", ("low", "intermediate", "high")), ("er", None)):
        for kind, spec in cell_case_specs(12, marker, 1, 4000, 3000):
            positive = 1.0 - spec.class_fractions[0]
            decision = rules.ki67(round(positive * 1e4), 10_000) if labels else rules.er_pr(
                marker, round(positive * 1e4), 0, 0, 10_000
            )  # fmt: skip
            assert decision.category == kind, (kind, positive)


@pytest.mark.parametrize("kind", ["null", "ultralow", "3+"])
def test_engine_finds_the_cells_and_the_category(her2_cohort, kind):
    row = _rows(her2_cohort)[kind]
    report = evaluate_case(her2_cohort.parent / row["case_id"], workers=1)
    assert report["detection"]["f1"] > 0.95, report["detection"]
    assert report["category"]["correct"], report["category"]


def _cells(xy, classes, mpp=0.5):
    n = len(xy)
    table = CellTable(**{f.name: np.zeros(n, np.float32) for f in fields(CellTable)})
    table.x, table.y = xy[:, 0].astype(np.float32), xy[:, 1].astype(np.float32)
    return Cells(table, np.asarray(classes, np.int8), "her2", mpp)


def test_report_numbers_on_a_known_answer():
    truth_xy = np.array([[10.0 + 40 * i, 20.0] for i in range(20)])
    truth_classes = np.array([0] * 18 + [1, 1], np.int8)  # 10% faint: ultralow
    truth = {
        "case_id": "c", "kind": "ultralow",
        "decision": {"category": "0", "label": "HER2-ultralow"},
    }  # fmt: skip
    # 18 found (2 missed), 1 false detection, one faint cell called unstained
    found_xy = np.vstack([truth_xy[:18] + 2.0, [[500.0, 500.0]]])  # 1 um off: matched
    found_classes = [0] * 17 + [1, 0]
    report = score_cells(_cells(found_xy, found_classes), truth_xy, truth_classes, truth)
    assert report["detection"]["true_positives"] == 18
    assert report["detection"]["f1"] == pytest.approx(2 * 18 / (19 + 20))
    assert report["count_error"] == -1
    assert report["positive_percent"]["truth"] == pytest.approx(10.0)
    assert report["positive_percent"]["detected"] == pytest.approx(100 / 19)
    assert report["confusion"][0] == [17, 1, 0, 0]  # a true 0 at index 17 was called faint
    assert report["category"] == {
        "truth": "0", "truth_label": "HER2-ultralow", "detected": "0",
        "detected_label": "HER2-ultralow", "correct": True,
    }  # fmt: skip
    perfect = score_cells(_cells(truth_xy, truth_classes), truth_xy, truth_classes, truth)
    summary = summarise([report, perfect])
    assert summary["detection"]["f1"] == pytest.approx(2 * 38 / (39 + 40))
    assert summary["detection"]["f1_min"] == pytest.approx(2 * 18 / 39)
    assert summary["category_accuracy"] == 1.0
    assert summary["category_by_kind"]["ultralow"] == {"n_cases": 2, "correct": 2, "accuracy": 1.0}
    assert summary["positive_percent_error"]["max_abs"] == pytest.approx(10.0 - 100 / 19)
    assert np.trace(summary["confusion"]) == 17 + 20


def test_cohort_report_and_the_command_line(her2_cohort, tmp_path, capsys):
    report = evaluate_cohort(her2_cohort.parent, workers=1)
    assert report["n_cases"] == 5 and report["detection"]["f1"] > 0.95
    assert report["category_by_kind"]["ultralow"]["accuracy"] == 1.0
    out = tmp_path / "ki67"
    assert main(["demo-data", str(out), "--cells", "--marker", "ki67", "--cases", "3",
                 "--size", "512x512", "--quiet"]) == 0  # fmt: skip
    assert {row["marker"] for row in _rows(out / "labels.csv").values()} == {"ki67"}
    assert main(["demo-data", str(tmp_path / "x"), "--marker", "ki67"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--cells" in err and "\n" not in err


def test_full_disk_is_one_line_and_leaves_no_partial_files(tiny_disk, capsys):  # noqa: F811
    out = tiny_disk(160) / "cohort"
    args = ["demo-data", str(out), "--cells", "--cases", "2", "--size", "1024x1024", "--quiet"]
    assert main(args) == 2
    one_line_error(capsys, "disk is full")
    assert not leftovers(out.parent)
    assert not (out / "labels.csv").exists()


def test_fast_hole_filling_matches_scipy():
    rng = np.random.default_rng(0)
    for level in (-0.5, 0.0, 0.3, 0.8):
        blurred = cv2.GaussianBlur(rng.standard_normal((120, 160)).astype(np.float32), (0, 0), 3)
        mask = blurred > level
        np.testing.assert_array_equal(fill_holes(mask), ndimage.binary_fill_holes(mask))
    ring = np.zeros((9, 9), bool)
    ring[2:7, 2:7], ring[4, 4] = True, False
    assert fill_holes(ring)[4, 4] and fill_holes(ring).sum() == 25
