"""Each guideline rule table, boundary by boundary, against the guideline's wording."""

from __future__ import annotations

import pytest

from her2viewer.cells.rules import (
    RuleError,
    allred_intensity_score,
    allred_proportion_score,
    er_pr,
    her2_breast,
    her2_gastric,
    ki67,
)

# -- HER2 breast (ASCO/CAP 2018/2023) -------------------------------------------------------


@pytest.mark.parametrize(
    ("faint", "weak", "strong", "category", "label"),
    [
        (0, 0, 0, "0", "HER2-null"),  # no staining at all
        (1, 0, 0, "0", "HER2-ultralow"),  # >0% faint incomplete
        (10, 0, 0, "0", "HER2-ultralow"),  # exactly 10% faint: "<=10%" is still IHC 0
        (11, 0, 0, "1+", "HER2-low"),  # >10% faint incomplete
        (90, 0, 0, "1+", "HER2-low"),  # faint in nearly every cell is still 1+
        (0, 10, 0, "0", "HER2-ultralow"),  # 10% weak complete, nothing else: <=10% stained
        (5, 5, 0, "0", "HER2-ultralow"),  # 10% stained in all: <=10%
        (0, 11, 0, "2+", "HER2-equivocal (HER2-low if ISH is not amplified)"),
        (0, 6, 5, "2+", "HER2-equivocal (HER2-low if ISH is not amplified)"),  # 11% complete
        (0, 0, 10, "2+", "HER2-equivocal (HER2-low if ISH is not amplified)"),  # intense <=10%
        (0, 0, 1, "2+", "HER2-equivocal (HER2-low if ISH is not amplified)"),
        (0, 0, 11, "3+", "HER2-positive"),  # intense complete >10%
        (50, 30, 11, "3+", "HER2-positive"),
    ],
)
def test_her2_breast_boundaries(faint, weak, strong, category, label):
    decision = her2_breast(faint, weak, strong, total=100)
    assert (decision.category, decision.label) == (category, label)
    assert decision.figures["reflex_ish"] is (category == "2+")
    assert "ASCO/CAP 2018" in decision.citation


def test_her2_breast_boundary_does_not_depend_on_float_rounding():
    # 10% of 30 cells is 3: the exact boundary with a total that 0.1 does not divide evenly
    assert her2_breast(3, 0, 0, total=30).category == "0"
    assert her2_breast(4, 0, 0, total=30).category == "1+"
    assert her2_breast(0, 0, 29, total=290).category == "2+"  # exactly 10% intense
    assert her2_breast(0, 0, 30, total=290).category == "3+"


def test_her2_breast_rule_text_and_percentages():
    decision = her2_breast(20, 0, 0, total=100)
    assert "faint/barely perceptible in >10%" in decision.rule
    assert decision.percentages["faint_incomplete"] == pytest.approx(20.0)
    unusual = her2_breast(0, 0, 5, total=100)
    assert "unusual pattern" in unusual.figures["note"]


def test_her2_breast_refuses_impossible_counts_and_says_not_evaluable():
    with pytest.raises(RuleError, match="outnumber"):
        her2_breast(60, 50, 0, total=100)
    with pytest.raises(RuleError, match="negative"):
        her2_breast(-1, 0, 0, total=10)
    assert her2_breast(0, 0, 0, total=0).category == "not evaluable"


# -- HER2 gastric (Hofmann 2008; CAP/ASCP/ASCO 2016) -------------------------------------------


@pytest.mark.parametrize(
    ("faint", "weak", "strong", "category"),
    [
        (0, 0, 0, "0"),
        (9, 0, 0, "0"),  # <10%
        (10, 0, 0, "1+"),  # exactly 10%: ">=10%" (unlike breast)
        (0, 10, 0, "2+"),
        (0, 5, 5, "2+"),  # complete/lateral of any intensity >=10%
        (0, 0, 9, "0"),  # 9% strong: no rule reaches it (no breast-style unusual pattern)
        (1, 0, 9, "1+"),  # 10% stained in all
        (0, 0, 10, "3+"),
    ],
)
def test_her2_gastric_resection_boundaries(faint, weak, strong, category):
    decision = her2_gastric(faint, weak, strong, total=100)
    assert decision.category == category
    assert decision.figures["specimen"] == "resection"


@pytest.mark.parametrize(
    ("clusters", "category"),
    [
        ({}, "0"),
        ({"faint": 4}, "0"),  # a cluster of 4 is not enough
        ({"faint": 5}, "1+"),  # >=5 cells
        ({"faint": 40, "weak_moderate": 5}, "2+"),
        ({"faint": 40, "weak_moderate": 12, "strong": 4}, "2+"),
        ({"faint": 40, "weak_moderate": 12, "strong": 5}, "3+"),
    ],
)
def test_her2_gastric_biopsy_cluster_rule(clusters, category):
    # 1000 tumor cells: the cluster decides whatever the percentage
    decision = her2_gastric(5, 5, 5, total=1000, specimen="biopsy", largest_clusters=clusters)
    assert decision.category == category
    assert "cluster" in decision.rule


def test_her2_gastric_refuses_unknown_specimen():
    with pytest.raises(RuleError, match="resection or biopsy"):
        her2_gastric(0, 0, 0, total=10, specimen="cytology")


# -- ER / PR (ASCO/CAP 2020) ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("marker", "weak", "moderate", "strong", "total", "category", "label"),
    [
        ("er", 0, 0, 0, 100, "negative", "ER-negative"),
        ("er", 1, 0, 0, 101, "negative", "ER-negative"),  # 0.99%: <1%
        ("er", 1, 0, 0, 100, "low positive", "ER-low positive"),  # exactly 1%
        ("er", 5, 3, 2, 100, "low positive", "ER-low positive"),  # exactly 10%
        ("er", 5, 3, 3, 100, "positive", "ER-positive"),  # 11%
        ("pr", 1, 0, 0, 101, "negative", "PR-negative"),
        ("pr", 1, 0, 0, 100, "positive", "PR-positive"),  # PR has no low-positive class
        ("pr", 0, 0, 5, 100, "positive", "PR-positive"),
    ],
)
def test_er_pr_boundaries(marker, weak, moderate, strong, total, category, label):
    decision = er_pr(marker, weak, moderate, strong, total)
    assert (decision.category, decision.label) == (category, label)


def test_h_score_and_allred():
    decision = er_pr("er", 10, 20, 30, total=100)
    assert decision.figures["h_score"] == pytest.approx(10 + 40 + 90)
    # 60% positive -> proportion 4; mean intensity (10 + 40 + 90) / 60 = 2.33 -> 2
    assert decision.figures["allred"] == {"proportion": 4, "intensity": 2, "total": 6}
    assert er_pr("er", 0, 0, 0, 100).figures["allred"]["total"] == 0


@pytest.mark.parametrize(
    ("positive", "total", "score"),
    [
        (0, 300, 0),
        (2, 300, 1),  # <1%
        (3, 300, 2),  # exactly 1%
        (30, 300, 2),  # exactly 1/10
        (31, 300, 3),
        (100, 300, 3),  # exactly 1/3
        (101, 300, 4),
        (200, 300, 4),  # exactly 2/3
        (201, 300, 5),
        (300, 300, 5),
    ],
)
def test_allred_proportion_boundaries(positive, total, score):
    assert allred_proportion_score(positive, total) == score


def test_allred_intensity_rounds_the_mean_intensity():
    assert allred_intensity_score(0, 0, 0) == 0
    assert allred_intensity_score(1, 1, 0) == 2  # mean 1.5 rounds half up
    assert allred_intensity_score(3, 1, 0) == 1  # mean 1.25
    assert allred_intensity_score(0, 0, 4) == 3


# -- Ki67 (IKWG 2021) --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("positive", "total", "category"),
    [
        (0, 100, "low"),
        (5, 100, "low"),  # exactly 5%
        (6, 100, "intermediate"),
        (29, 100, "intermediate"),
        (30, 100, "high"),  # exactly 30%
        (80, 100, "high"),
    ],
)
def test_ki67_boundaries(positive, total, category):
    decision = ki67(positive, total)
    assert decision.category == category
    assert decision.figures["index"] == pytest.approx(100 * positive / total)


def test_ki67_hot_spot_is_reported_and_errors_are_one_sentence():
    assert ki67(40, 200, method="hot spot").figures["method"] == "hot spot"
    with pytest.raises(RuleError, match="global or hot spot"):
        ki67(1, 10, method="average")
    assert ki67(0, 0).category == "not evaluable"
