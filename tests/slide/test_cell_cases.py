"""Slides drawn cell by cell: windows that agree at their edges, a real slide file, its truth."""

from __future__ import annotations

import csv

import numpy as np

from her2viewer.slide import cell_field, open_slide
from her2viewer.slide.cell_field import CellCaseSpec, plan_cells, render_cells, write_cell_case


def test_windows_side_by_side_equal_the_whole(monkeypatch):
    monkeypatch.setattr(cell_field, "NOISE", 0.0)  # noise is seeded per window
    plan = plan_cells(600, 400, (0.4, 0.3, 0.2, 0.1), marker="her2", seed=2)
    whole = render_cells(plan, 0, 0, 600, 400)
    left, right = render_cells(plan, 0, 0, 250, 400), render_cells(plan, 250, 0, 350, 400)
    np.testing.assert_array_equal(np.concatenate([left, right], axis=1), whole)
    assert (whole.min(axis=2) < 120).mean() > 0.1  # cells were drawn


def test_plan_meets_the_class_fractions_in_clones():
    plan = plan_cells(1200, 1000, (0.5, 0.25, 0.15, 0.1), marker="her2", seed=4)
    counts = np.bincount(plan.classes, minlength=4) / len(plan)
    np.testing.assert_allclose(counts, (0.5, 0.25, 0.15, 0.1), atol=0.002)
    # neighbours mostly share a class (clones), as in stained tissue
    points = np.column_stack([plan.x, plan.y])
    nearest = np.argsort(((points[:, None] - points[None]) ** 2).sum(-1), axis=1)[:, 1]
    assert (plan.classes == plan.classes[nearest]).mean() > 0.7


def test_cell_case_is_a_slide_with_mpp_and_its_cells(tmp_path):
    spec = CellCaseSpec("case000", "ki67", (0.6, 0.2, 0.1, 0.1), 2048, 1536, seed=9)
    plan, written = write_cell_case(spec, tmp_path)
    case = tmp_path / "case000"
    assert written["n_cells"] == len(plan) > 1500
    assert written["class_counts"] == np.bincount(plan.classes, minlength=4).tolist()
    with (case / "cells.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["x", "y", "class"] and len(rows) == len(plan)
    with open_slide(case / written["ihc_path"]) as slide:
        assert (slide.info.width, slide.info.height, slide.info.mpp_x) == (2048, 1536, 0.5)
        assert slide.info.level_count >= 2
        assert "Ki67" in slide.info.properties.get("aperio.Stain", "")
        image = slide.read_region((0, 0), 0, (2048, 1536))
    assert image[:8, :8].min() > 230  # glass around the tissue
    # every true cell is a dark nucleus on the slide, its DAB as its class says
    x = np.array([float(r["x"]) for r in rows]).round().astype(int)
    y = np.array([float(r["y"]) for r in rows]).round().astype(int)
    classes = np.array([int(r["class"]) for r in rows])
    centre = image[y, x].astype(float)
    assert (centre.mean(axis=1) < 200).all()
    brown = centre[:, 0] - centre[:, 2]  # DAB is redder than hematoxylin
    assert brown[classes == 3].mean() > brown[classes == 0].mean() + 30
