"""The synthetic paired cohort: deterministic, labelled, and true to its ground truth."""

from __future__ import annotations

import csv
import json

import cv2
import numpy as np
import pytest

from her2viewer.slide import open_slide
from her2viewer.slide.synthetic import HIGH_FRACTION_RANGE, CaseSpec, write_case
from her2viewer.tissue.masks import read_mask


def _cases(labels):
    with labels.open() as handle:
        return list(csv.DictReader(handle))


def test_labels_csv_columns_and_balanced_scores(synthetic_cohort):
    rows = _cases(synthetic_cohort)
    assert list(rows[0]) == [
        "case_id",
        "he_path",
        "ihc_path",
        "ihc_score",
        "her2_status",
        "patient_id",
    ]
    assert sorted(int(r["ihc_score"]) for r in rows) == [0, 1, 2, 3]
    for row in rows:
        assert (synthetic_cohort.parent / row["he_path"]).exists()
        assert row["her2_status"] == ("positive" if int(row["ihc_score"]) >= 2 else "negative")


def test_truth_is_consistent_with_masks(synthetic_cohort):
    for row in _cases(synthetic_cohort):
        case = synthetic_cohort.parent / row["case_id"]
        truth = json.loads((case / "truth.json").read_text())
        assert truth["synthetic"] is True
        tissue, tumor, high = (
            read_mask(case / truth["masks"][k]) for k in ("tissue", "tumor", "high_expression")
        )
        assert not (tumor & ~tissue).any() and not (high & ~tumor).any()
        fraction = high.sum() / tumor.sum()
        assert truth["high_expression_fraction"] == pytest.approx(fraction)
        low, top = HIGH_FRACTION_RANGE[truth["ihc_score"]]
        assert low - 0.05 <= fraction <= top + 0.05
        assert (fraction >= 0.1) == (truth["her2_status"] == "positive")


def _mean_rgb(slide_path, mask, downsample, level=1):
    with open_slide(slide_path) as slide:
        image = slide.level_image(level)
        ds = slide.info.levels[level].downsample
    small = cv2.resize(
        mask.astype(np.uint8), (image.shape[1], image.shape[0]), interpolation=cv2.INTER_NEAREST
    )
    eroded = cv2.erode(small, np.ones((5, 5), np.uint8)).astype(bool)
    assert downsample > ds
    return image[eroded].astype(float).mean(axis=0)


def test_ihc_transform_maps_ihc_tissue_onto_he_tissue(synthetic_case):
    truth = json.loads((synthetic_case / "truth.json").read_text())
    he_mask = read_mask(synthetic_case / "tissue_mask.png")
    ihc_mask = read_mask(synthetic_case / "ihc_tissue_mask.png")
    ds = truth["mask_downsample"]
    matrix = np.array(truth["transform_ihc_to_he"])
    ys, xs = np.nonzero(ihc_mask)
    points = np.stack([xs * ds + ds / 2, ys * ds + ds / 2, np.ones_like(xs)], 0).astype(float)
    mapped = (matrix @ points)[:2] / ds
    inside = he_mask[
        np.clip(mapped[1].astype(int), 0, he_mask.shape[0] - 1),
        np.clip(mapped[0].astype(int), 0, he_mask.shape[1] - 1),
    ]
    assert inside.mean() > 0.97
    assert not np.allclose(matrix, np.eye(3))  # the IHC slide really is moved


def test_ihc_dab_follows_the_score(synthetic_cohort):
    """Brown (DAB) tumor in 3+ is browner than in 0; H&E tumor is purple, stroma pink."""
    browness = {}
    for row in _cases(synthetic_cohort):
        case = synthetic_cohort.parent / row["case_id"]
        truth = json.loads((case / "truth.json").read_text())
        tumor = read_mask(case / "tumor_mask.png")
        he_tumor = _mean_rgb(case / "he.svs", tumor, truth["mask_downsample"])
        he_stroma = _mean_rgb(case / "he.svs", read_mask(case / "tissue_mask.png") & ~tumor, 16)
        assert he_tumor.mean() < he_stroma.mean()  # denser nuclei
        # tumor mask in the IHC frame
        inverse = np.linalg.inv(np.array(truth["transform_ihc_to_he"]))
        s = np.array([[16, 0, 8], [0, 16, 8], [0, 0, 1]])
        m = np.linalg.inv(s) @ inverse @ s
        ihc_tumor = cv2.warpAffine(
            tumor.astype(np.uint8), np.linalg.inv(m)[:2], tumor.shape[::-1], flags=cv2.INTER_NEAREST
        )
        r, g, b = _mean_rgb(case / "ihc.svs", ihc_tumor > 0, 16)
        browness[truth["ihc_score"]] = r - b
    assert browness[3] > browness[2] > browness[0]
    assert browness[0] < 0  # hematoxylin only: bluish


def test_same_seed_same_case(tmp_path):
    spec = CaseSpec("c", 3, 1024, 768, seed=5, index=0)
    first = write_case(spec, tmp_path / "a")
    second = write_case(spec, tmp_path / "b")
    assert first == second
    with (
        open_slide(tmp_path / "a" / "c" / "ihc.svs") as a,
        open_slide(tmp_path / "b" / "c" / "ihc.svs") as b,
    ):
        np.testing.assert_array_equal(
            a.read_region((0, 0), 0, (1024, 768)), b.read_region((0, 0), 0, (1024, 768))
        )
    other = write_case(CaseSpec("c", 3, 1024, 768, seed=6, index=0), tmp_path / "c")
    assert other["transform_ihc_to_he"] != first["transform_ihc_to_he"]


def test_no_partial_files_left(synthetic_cohort):
    assert not list(synthetic_cohort.parent.rglob("*.partial"))
