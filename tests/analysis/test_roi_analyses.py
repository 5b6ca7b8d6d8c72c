"""Analyses inside an annotated region, measured against the synthetic truth masks.

The synthetic IHC slides are drawn from known masks (slide/synthetic.py): tumor outside
the high-expression regions has faint incomplete membranes (category 1), tumor inside
them moderate complete (2, a 2+ case) or strong complete (3, a 3+ case). The truth of a
region is that category map (warped into the IHC frame) restricted to the region and
scored by the same guideline rules.

Tolerance: the scorer's cell regions are 32 um squares against 8 um truth pixels, so
regions on an outline mix two categories, and it calls about half of the faint
incomplete regions negative (its known 0/1+ weakness on these slides, whole-slide as in
test_ihc_scoring). So the test asks for the same score, the same HER2 status and the
percentage of complete-membrane regions (weak-moderate or strong complete, which decides
2+/3+) within 8 points of the truth: the observed differences are under 5 points, and 8
points still keep every region here on the same side of the 10 % cut-off.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import shapely

from her2viewer.analysis.clam import ClamOptions, analyse_clam
from her2viewer.analysis.grade import GradeOptions, analyse_grade
from her2viewer.analysis.her2net import analyse_her2net
from her2viewer.analysis.ihc import (
    NOT_TUMOR,
    IhcOptions,
    IhcRules,
    analyse_ihc,
    apply_rules,
    category_percentages,
)
from her2viewer.annotations.roi import Region, RoiError, load_region, region_from_features
from her2viewer.cli import main
from her2viewer.geometry.geojson import Feature, write_features
from her2viewer.models.clam import demo_clam_bundle_path
from her2viewer.models.her2net.model import demo_bundle_path
from her2viewer.models.her2net.predict import Her2NetOptions
from her2viewer.registration import warp_map
from her2viewer.slide import open_slide

MASK_DS = 16
COMPLETE = ("weak_moderate_complete", "strong_complete")
#: Points the complete-membrane percentage may differ from the truth (module docstring).
TOLERANCE = 8.0


def _complete(percentages: dict) -> float:
    return sum(percentages[name] for name in COMPLETE)


def _outline(mask: np.ndarray, grow: int) -> shapely.MultiPolygon:
    """Level-0 polygons of a mask-resolution mask, grown (or shrunk, < 0) by mask pixels."""
    kernel = np.ones((3, 3), np.uint8)
    mask = mask.astype(np.uint8)
    mask = (
        cv2.dilate(mask, kernel, iterations=grow)
        if grow > 0
        else cv2.erode(mask, kernel, iterations=-grow)
    )
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    polygons = [shapely.Polygon((c[:, 0, :] + 0.5) * MASK_DS) for c in contours if len(c) >= 3]
    return shapely.union_all([p.buffer(0) for p in polygons])


class Case:
    """A synthetic 2+ case: truth masks and categories in the IHC frame."""

    def __init__(self, cohort_csv: Path):
        row = next(r for r in csv.DictReader(cohort_csv.open()) if r["ihc_score"] == "2")
        self.folder = cohort_csv.parent / row["case_id"]
        self.slide = self.folder / "ihc.svs"
        truth = json.loads((self.folder / "truth.json").read_text())
        to_ihc = np.linalg.inv(truth["transform_ihc_to_he"])
        self.shape = (-(-truth["height"] // MASK_DS), -(-truth["width"] // MASK_DS))
        self.tumor, self.high, self.tissue = (
            warp_map(
                cv2.imread(str(self.folder / f"{name}_mask.png"), 0) > 0,
                MASK_DS,
                to_ihc,
                self.shape,
                MASK_DS,
            )
            for name in ("tumor", "high_expression", "tissue")
        )
        self.categories = np.full(self.shape, NOT_TUMOR, np.uint8)
        self.categories[self.tumor] = 1  # faint incomplete
        self.categories[self.tumor & self.high] = 2  # moderate complete (a 2+ case)

    def truth(self, region: Region) -> tuple[int, dict]:
        """The guideline score and percentages of the truth categories inside ``region``."""
        categories = self.categories.copy()
        categories[~region.mask(self.shape, MASK_DS)] = NOT_TUMOR
        return apply_rules(categories, IhcRules(), 1), category_percentages(categories)


@pytest.fixture(scope="module")
def case(synthetic_cohort) -> Case:
    return Case(synthetic_cohort)


@pytest.fixture(scope="module")
def roi_file(case, tmp_path_factory) -> Path:
    """The tumor outlined (Tumor) and its high-expression hot spots outlined (Other)."""
    path = tmp_path_factory.mktemp("roi") / "outlines.geojson"
    write_features(
        path,
        [
            Feature(_outline(case.tumor, -1), class_name="Tumor", name="invasive tumor"),
            Feature(_outline(case.tumor & case.high, -1), class_name="Other", name="hot spot"),
            Feature(shapely.LineString([(0, 0), (500, 500)]), class_name="Tumor", name="ruler"),
        ],
    )
    return path


def _score(capsys, *args) -> dict:
    assert main(["ihc", "score", *map(str, args), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_ihc_score_of_the_tumor_outline_equals_the_truth_inside_it(case, roi_file, capsys):
    result = _score(capsys, case.slide, "--roi", roi_file, "--roi-class", "Tumor")
    region = load_region(roi_file, ["Tumor"])
    score, percentages = case.truth(region)
    print(
        f"\nTumor ROI: truth {score}+ {percentages}; "
        f"scored {result['score']}+ {result['percentages']}"
    )
    assert score == 2 and result["score"] == score and result["status"] == "positive"
    assert abs(_complete(result["percentages"]) - _complete(percentages)) <= TOLERANCE
    assert result["region"] == region.description
    assert "1 line/point annotation left out" in result["region"]
    assert result["region_area_um2"] == pytest.approx(region.geometry.area * 0.25, rel=1e-6)


def test_another_class_gives_another_answer_also_true(case, roi_file, capsys):
    tumor = _score(capsys, case.slide, "--roi", roi_file, "--roi-class", "Tumor")
    hot = _score(capsys, case.slide, "--roi", roi_file, "--roi-class", "other")
    score, percentages = case.truth(load_region(roi_file, ["Other"]))
    print(
        f"\nhot-spot ROI: truth {score}+ {percentages}; scored {hot['score']}+ {hot['percentages']}"
    )
    assert hot["score"] == score == 2
    assert abs(_complete(hot["percentages"]) - _complete(percentages)) <= TOLERANCE
    assert _complete(hot["percentages"]) > _complete(tumor["percentages"]) + 30
    assert hot["region_area_um2"] < tumor["region_area_um2"]


def test_ignore_regions_are_left_out_of_the_score(case):
    """Tumor minus Ignore* over the hot spots: only faint incomplete tumor is left (1+)."""
    features = [
        Feature(_outline(case.tumor, -1), class_name="Tumor"),
        Feature(_outline(case.tumor & case.high, 1), class_name="Ignore*"),
    ]
    region = region_from_features(features, ["Tumor"], source="ignore.geojson")
    score, percentages = case.truth(region)
    with open_slide(case.slide) as slide:
        result = analyse_ihc(slide, None, IhcOptions(region=region))
    print(
        f"\nTumor minus Ignore*: truth {score}+ {percentages}; "
        f"scored {result.score}+ {result.percentages}"
    )
    assert score == result.score == 1 and result.status == "negative"
    assert abs(_complete(result.percentages) - _complete(percentages)) <= TOLERANCE
    assert "(minus 1 Ignore*)" in result.summary()["region"]


def test_a_region_without_tissue_is_not_evaluable(case):
    glass = np.argwhere(~case.tissue[:8, :8])
    assert len(glass) == 64  # the top-left corner of the synthetic slide is glass
    region = Region(shapely.box(0, 0, 8 * MASK_DS, 8 * MASK_DS), "a corner")
    with open_slide(case.slide) as slide:
        result = analyse_ihc(slide, None, IhcOptions(region=region))
    assert result.status == "not_evaluable" and result.score is None
    assert result.reason.startswith("no tissue inside the region (a corner)")
    assert result.summary()["region_area_um2"] == pytest.approx(128 * 128 * 0.25)


def test_whole_slide_summary_says_so(case):
    with open_slide(case.slide) as slide:
        result = analyse_ihc(slide)
    assert result.summary()["region"] is None


def test_region_off_the_slide_is_one_sentence(case, tmp_path, capsys):
    path = tmp_path / "elsewhere.geojson"
    write_features(path, [Feature(shapely.box(50_000, 50_000, 51_000, 51_000), class_name="Tumor")])
    assert main(["ihc", "score", str(case.slide), "--roi", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "lies outside ihc.svs" in err


def test_roi_class_without_roi_and_unknown_class(case, roi_file, capsys):
    assert main(["ihc", "score", str(case.slide), "--roi-class", "Tumor"]) == 2
    assert "give --roi too" in capsys.readouterr().err
    assert (
        main(["ihc", "score", str(case.slide), "--roi", str(roi_file), "--roi-class", "Necrosis"])
        == 2
    )
    err = capsys.readouterr().err.strip()
    assert (
        "\n" not in err
        and "No annotation of class Necrosis in" in err
        and "outlines.geojson" in err
    )
    with pytest.raises(RoiError):
        load_region(roi_file, ["Necrosis"])


LEFT = Region(shapely.box(0, 0, 1500, 2400), "left half")


def _left(coords, size0) -> bool:
    return bool(len(coords)) and bool((np.asarray(coords)[:, 0] + size0 / 2 < 1500).all())


def test_her2net_uses_only_tiles_centred_in_the_region(case):
    he = case.folder / "he.svs"
    with open_slide(he) as slide:
        whole = analyse_her2net(slide, demo_bundle_path(), Her2NetOptions(workers=1))
        left = analyse_her2net(slide, demo_bundle_path(), Her2NetOptions(workers=1, region=LEFT))
    coords = [(t.x, t.y) for t in left.tiles]
    assert _left(coords, left.tile_size_px) and len(left.tiles) < len(whole.tiles)
    assert left.summary()["region"] == "left half" and whole.summary()["region"] is None
    assert left.summary()["region_area_mm2"] == pytest.approx(0.9)


def test_a_region_holding_no_tile_centre_is_one_sentence(case):
    tiny = Region(shapely.box(10, 10, 20, 20), "a speck")
    with open_slide(case.folder / "he.svs") as slide, pytest.raises(RoiError) as error:
        analyse_her2net(slide, demo_bundle_path(), Her2NetOptions(workers=1, region=tiny))
    assert "inside the region (a speck); draw a larger region" in str(error.value)


def test_grading_uses_only_patches_centred_in_the_region(case):
    with open_slide(case.slide) as slide:
        result = analyse_grade(slide, None, GradeOptions(device="cpu", region=LEFT))
    assert _left(result.coords, result.patch_size_level0)
    assert result.summary()["region"] == "left half"


def test_clam_uses_only_patches_centred_in_the_region(case, tmp_path):
    options = ClamOptions(device="cpu", workers=1, region=LEFT)
    with open_slide(case.folder / "he.svs") as slide:
        result = analyse_clam(slide, demo_clam_bundle_path(), options, cache=tmp_path)
    assert _left(result.coords, 256)  # 256 px patches at 20x on a 20x slide
    right = result.values[:, int((1500 + 128) / result.downsample) + 1 :]
    assert np.isnan(right).all()
    assert result.summary()["region_area_um2"] == pytest.approx(900_000)


@pytest.fixture(scope="module")
def left_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("left") / "left.geojson"
    write_features(path, [Feature(LEFT.geometry, class_name="Tumor")])
    return path


def test_every_analysis_verb_takes_the_roi_options(case, left_file, tmp_path, capsys):
    runs = {
        "grade": ["grade", "predict", case.slide, "--device", "cpu"],
        "her2net": ["her2net", "predict", case.folder / "he.svs", "--workers", "1", "--quiet"],
        "clam": [
            "clam", "heatmap", case.folder / "he.svs", "--model", demo_clam_bundle_path(),
            "-o", tmp_path / "attention.png", "--device", "cpu", "--workers", "1", "--quiet",
        ],
    }  # fmt: skip
    for verb, args in runs.items():
        json_flag = [] if verb == "clam" else ["--json"]
        code = main([*map(str, args), *json_flag, "--roi", str(left_file), "--roi-class", "Tumor"])
        assert code == 0, verb
        summary = json.loads(capsys.readouterr().out)
        assert summary["region"] == "1 Tumor annotation from left.geojson", verb
        assert summary["region_area_mm2"] == pytest.approx(0.9), verb


def test_grade_text_names_a_region_only_when_there_is_one(case, left_file, capsys):
    assert main(["grade", "predict", str(case.slide), "--device", "cpu", "--quiet"]) == 0
    assert "region" not in capsys.readouterr().out
    args = ["grade", "predict", str(case.slide), "--device", "cpu", "--roi", str(left_file)]
    assert main([*args, "--quiet"]) == 0
    assert "region: 1 annotation from left.geojson" in capsys.readouterr().out
