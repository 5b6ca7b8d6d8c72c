"""Rule-based HER2 IHC scoring: guideline boundaries, the synthetic cohort, the CLI."""

from __future__ import annotations

import csv
import json

import cv2
import numpy as np
import pytest
import skimage.data
from sklearn.metrics import accuracy_score, cohen_kappa_score, roc_auc_score

from her2viewer.analysis.ihc import (
    NOT_TUMOR,
    IhcRules,
    apply_rules,
    category_percentages,
    region_categories,
    score_ihc,
)
from her2viewer.cli import main
from her2viewer.errors import StainError
from her2viewer.registration import warp_map
from her2viewer.slide import open_slide
from her2viewer.stain import separate_stains, tile_means


def _map(percent_by_category: dict, n: int = 1000) -> np.ndarray:
    values = []
    for category, percent in percent_by_category.items():
        values += [category] * round(n * percent / 100)
    values += [0] * (n - len(values))
    return np.array(values, np.uint8).reshape(-1, 10)


@pytest.mark.parametrize(
    ("percentages", "breast", "gastric"),
    [
        ({3: 10.0}, 0, 3),  # exactly 10 %: breast needs > 10 %, gastric >= 10 %
        ({3: 10.1}, 3, 3),
        ({2: 10.0}, 0, 2),
        ({2: 10.1}, 2, 2),
        ({2: 6.0, 3: 5.0}, 2, 2),  # at least weak-moderate complete in 11 %
        ({1: 10.1}, 1, 1),
        ({1: 5.0, 2: 5.1}, 1, 1),
        ({1: 9.9}, 0, 0),
        ({}, 0, 0),
    ],
)
def test_percentage_rules_at_boundaries(percentages, breast, gastric):
    category_map = _map(percentages)
    assert apply_rules(category_map, IhcRules(), 6) == breast
    assert apply_rules(category_map, IhcRules.for_guideline("gastric_resection"), 6) == gastric


def test_gastric_biopsy_needs_a_cluster_of_five_cells():
    category_map = np.zeros((20, 20), np.uint8)
    category_map[3, 3] = 3  # one region of 2 cells: not a cluster
    rules = IhcRules.for_guideline("gastric_biopsy")
    assert apply_rules(category_map, rules, cells_per_region=2) == 0
    category_map[3, 4:6] = 3  # three touching regions, 6 cells
    assert apply_rules(category_map, rules, cells_per_region=2) == 3
    category_map[category_map == 3] = 2
    assert apply_rules(category_map, rules, cells_per_region=2) == 2


def test_percentages_ignore_non_tumor():
    category_map = np.array([[0, 1, 2, 3, NOT_TUMOR]], np.uint8)
    assert category_percentages(category_map)["strong_complete"] == 25.0


def _membranes(dab_od: float, complete: bool, side: int = 64, cell: int = 26) -> np.ndarray:
    """Stains (H, DAB, residual) of a tumor tile with membranes of a given DAB OD."""
    size = side * 4
    stains = np.zeros((size, size, 3), np.float32)
    yy, xx = np.mgrid[0:size, 0:size]
    centre = (yy % cell - cell // 2) ** 2 + (xx % cell - cell // 2) ** 2
    stains[..., 0] = np.where(centre < 49, 0.4, 0.02)  # nuclei
    lines = yy % cell < 2
    if complete:
        lines |= xx % cell < 2
    stains[..., 1] = np.where(lines, dab_od, 0.0)
    return stains


@pytest.mark.parametrize(
    ("dab_od", "complete", "expected"),
    [
        (0.0, True, 0),
        (0.049, True, 0),  # below faint (0.05)
        (0.051, True, 1),  # faint
        (0.119, True, 1),  # still faint (weak-moderate starts at 0.12)
        (0.121, True, 2),
        (0.121, False, 1),  # weak-moderate but incomplete
        (0.299, True, 2),
        (0.301, True, 3),
        (0.8, False, 1),  # strong but incomplete
    ],
)
def test_region_intensity_cutoffs_and_completeness(dab_od, complete, expected):
    categories = region_categories(_membranes(dab_od, complete), IhcRules(), 64, 600)
    assert set(np.unique(categories).tolist()) == {expected}


def test_stroma_is_not_tumor():
    stains = np.zeros((128, 128, 3), np.float32)
    assert (region_categories(stains, IhcRules(), 64, 600) == NOT_TUMOR).all()


@pytest.fixture(scope="module")
def cohort_scores(ihc_cohort):
    rows = list(csv.DictReader(ihc_cohort.open()))
    results = []
    for row in rows:
        with open_slide(ihc_cohort.parent / row["ihc_path"]) as slide:
            results.append(score_ihc(slide))
    return rows, results


def test_rule_based_score_agrees_with_truth(cohort_scores):
    rows, results = cohort_scores
    truth = [int(r["ihc_score"]) for r in rows]
    predicted = [r.score for r in results]
    accuracy = accuracy_score(truth, predicted)
    kappa = cohen_kappa_score(truth, predicted, weights="quadratic")
    print(f"\nrule-based IHC score: accuracy {accuracy:.3f}, quadratic kappa {kappa:.3f}")
    assert accuracy >= 0.75
    assert kappa >= 0.8
    for result in results:
        assert result.status == ("positive" if result.score >= 2 else "negative")
        assert result.equivocal == (result.score == 2)
        assert sum(result.percentages.values()) == pytest.approx(100.0)


def test_dab_map_finds_high_expression(ihc_cohort):
    """DAB per 16 px block (mask resolution) vs the true high-expression mask: AUC."""
    aucs = []
    for row in csv.DictReader(ihc_cohort.open()):
        if int(row["ihc_score"]) < 2:
            continue
        case = ihc_cohort.parent / row["case_id"]
        truth = json.loads((case / "truth.json").read_text())
        with open_slide(case / "ihc.svs") as slide:
            rgb = slide.read_region((0, 0), 0, (slide.info.width, slide.info.height))
        dab = tile_means(separate_stains(rgb)[..., 1], 16)
        to_ihc = np.linalg.inv(truth["transform_ihc_to_he"])
        high, tumor = (
            warp_map(cv2.imread(str(case / f"{name}_mask.png"), 0) > 0, 16, to_ihc, dab.shape, 16)
            for name in ("high_expression", "tumor")
        )
        aucs.append(roc_auc_score(high[tumor], dab[tumor]))
    print(f"\nDAB map vs high-expression mask (in tumor): AUC {np.round(aucs, 3).tolist()}")
    assert min(aucs) > 0.8


def test_cli_scores_a_plain_image(tmp_path, capsys):
    path = tmp_path / "ihc.png"
    cv2.imwrite(str(path), skimage.data.immunohistochemistry()[..., ::-1])
    map_path = tmp_path / "map.png"
    assert main(["ihc", "score", str(path), "--json", "--map", str(map_path)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["score"] in (0, 1, 2, 3)
    assert result["status"] in ("positive", "negative")
    assert set(result["dab"]) >= {"mean_od", "positive_fraction", "h_score"}
    assert 0 < result["dab"]["positive_fraction"] <= 1
    assert map_path.exists()
    assert main(["ihc", "score", str(path), "--estimate-stains"]) == 0
    assert "HER2 IHC score" in capsys.readouterr().out


def test_cli_bad_input_is_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.svs"
    bad.write_bytes(b"not a slide")
    assert main(["ihc", "score", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("her2viewer: error:") and "\n" not in err


def test_bad_rules_raise():
    with pytest.raises(StainError):
        IhcRules(guideline="lung")
    with pytest.raises(StainError):
        IhcRules(faint=0.2, moderate=0.1)
