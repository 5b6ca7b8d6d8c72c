"""The cell engine on synthetic fields drawn cell by cell with a known class per cell."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch
from scipy.spatial import cKDTree

from her2viewer.cells.detect import ClassicalDetector, DetectorError, load_detector
from her2viewer.cells.engine import Cells, class_of_cells, decide, detect_cells, hot_spot
from her2viewer.cells.evaluate import MATCH_DISTANCE_UM, class_confusion, match_cells
from her2viewer.cells.measure import CellTable, measure_cells
from her2viewer.cells.profiles import NucleusProfile, ProfileError, load_profile
from her2viewer.cells.rules import RuleError
from her2viewer.slide.cell_field import draw_cell_field
from her2viewer.stain.deconvolution import HDAB, separate_stains


def _run(field, marker, tile=4096, detector=None):
    profile = load_profile(None, marker)
    height, width = field.rgb.shape[:2]

    def read(x, y, w, h):
        return field.rgb[y : y + h, x : x + w]

    table = detect_cells(read, (0, 0, width, height), field.mpp, profile, detector, tile=tile)
    return Cells(table, class_of_cells(table, profile), marker, field.mpp)


def _matching(cells, field):
    return match_cells(
        np.column_stack([cells.table.x, cells.table.y]) * field.mpp,
        np.column_stack([field.x, field.y]) * field.mpp,
        MATCH_DISTANCE_UM,
    )


@pytest.fixture(scope="module")
def her2_field():
    return draw_cell_field(900, 700, (0.4, 0.3, 0.2, 0.1), marker="her2", seed=3)


@pytest.fixture(scope="module")
def ki67_field():
    return draw_cell_field(900, 700, (0.7, 0.1, 0.1, 0.1), marker="ki67", seed=4)


def test_detection_finds_the_drawn_cells(her2_field):
    matching = _matching(_run(her2_field, "her2"), her2_field)
    assert matching.n_truth > 700
    assert matching.f1 > 0.97, matching.to_dict()


def test_her2_membrane_classes_match_the_truth(her2_field):
    cells = _run(her2_field, "her2")
    matching = _matching(cells, her2_field)
    confusion = class_confusion(matching, cells.classes, her2_field.classes)
    accuracy = np.trace(confusion) / confusion.sum()
    assert accuracy > 0.85, confusion
    # nothing unstained is called complete, and no strong membrane is called unstained
    assert confusion[0, 2:].sum() == 0 and confusion[3, 0] == 0, confusion


def test_nuclear_classes_match_the_truth(ki67_field):
    cells = _run(ki67_field, "ki67")
    matching = _matching(cells, ki67_field)
    confusion = class_confusion(matching, cells.classes, ki67_field.classes)
    positive_truth = confusion[1:].sum()
    assert confusion[1:, 1:].sum() / positive_truth > 0.97, confusion
    assert confusion[0, 1:].sum() / confusion[0].sum() < 0.01, confusion


def test_tiles_count_every_cell_once(her2_field):
    whole = _run(her2_field, "her2", tile=4096)
    tiled = _run(her2_field, "her2", tile=160)  # many tile edges through cells
    assert len(tiled) == len(whole)
    points = np.column_stack([tiled.table.x, tiled.table.y])
    pairs = match_cells(points, np.column_stack([whole.table.x, whole.table.y]), 0.5)
    assert pairs.true_positives == len(whole)
    assert not cKDTree(points).query_pairs(2.0 / her2_field.mpp)  # no duplicates


def test_same_cells_at_20x_and_40x():
    at_40x = draw_cell_field(1200, 1000, (0.5, 0.2, 0.2, 0.1), marker="ki67", mpp=0.25, seed=5)
    at_20x_rgb = cv2.resize(at_40x.rgb, (600, 500), interpolation=cv2.INTER_AREA)
    at_20x = type(at_40x)(at_20x_rgb, at_40x.x / 2, at_40x.y / 2, at_40x.classes, 0.5)
    found_40 = _matching(_run(at_40x, "ki67"), at_40x)
    found_20 = _matching(_run(at_20x, "ki67"), at_20x)
    assert found_40.f1 > 0.95 and found_20.f1 > 0.95
    assert abs(found_40.n_detected - found_20.n_detected) <= 0.03 * found_40.n_truth


@pytest.mark.parametrize(
    ("fractions", "category", "label"),
    [
        ((1, 0, 0, 0), "0", "HER2-null"),
        ((0.95, 0.05, 0, 0), "0", "HER2-ultralow"),
        ((0.6, 0.4, 0, 0), "1+", "HER2-low"),
        ((0.3, 0.1, 0.1, 0.5), "3+", "HER2-positive"),
    ],
)
def test_case_category_from_cells(fractions, category, label):
    field = draw_cell_field(700, 600, fractions, marker="her2", seed=6)
    decision = decide(_run(field, "her2"))
    assert (decision.category, decision.label) == (category, label), decision.percentages


def test_membrane_completeness_of_a_half_ring():
    nuclei = np.zeros((80, 80), np.int32)
    cv2.circle(nuclei, (40, 40), 8, 1, -1)
    dab = np.zeros((80, 80), np.float32)
    cv2.ellipse(dab, (40, 40), (16, 16), 0, 0, 180, 0.6, 2)  # lower half of the membrane
    hematoxylin = (nuclei > 0).astype(np.float32) * 0.6
    table, _ = measure_cells(nuclei, hematoxylin, dab, 0.5, 10.0, 1.0, 0.2)
    assert table.membrane_completeness[0] == pytest.approx(0.5, abs=0.06)
    assert table.dab_membrane_stained[0] == pytest.approx(0.6, abs=0.05)
    assert table.nucleus_area[0] == pytest.approx(np.pi * 8**2 * 0.25, rel=0.05)  # um^2


class _DarkNuclei(torch.nn.Module):
    """A stand-in deep detector: nucleus probability from how dark and blue a pixel is."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        darkness = 1.0 - x.mean(dim=1, keepdim=True)
        return (darkness - 0.25) * 20.0  # logits


def test_torchscript_detector_through_the_same_interface(tmp_path, ki67_field):
    path = tmp_path / "nuclei.pt"
    torch.jit.save(torch.jit.script(_DarkNuclei()), str(path))
    detector = load_detector(path, NucleusProfile(), model_mpp=0.5)
    matching = _matching(_run(ki67_field, "ki67", detector=detector), ki67_field)
    assert matching.f1 > 0.9, matching.to_dict()


def test_bad_detectors_and_profiles_fail_in_one_sentence(tmp_path):
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a model")
    with pytest.raises(DetectorError, match="not a TorchScript model") as caught:
        load_detector(broken, NucleusProfile())
    assert "\n" not in str(caught.value)
    with pytest.raises(DetectorError, match="No nucleus model"):
        load_detector(tmp_path / "missing.pt", NucleusProfile())
    rgb = np.full((32, 32, 3), 255, np.uint8)
    with pytest.raises(DetectorError, match="--mpp"):
        ClassicalDetector().detect(rgb, 0.0, separate_stains(rgb, HDAB))
    bad = tmp_path / "lab.json"
    bad.write_text(json.dumps({"name": "lab", "marker": "her2", "thresholds": {"weak": 0.5}}))
    with pytest.raises(ProfileError, match="lab.json") as caught:
        load_profile(bad, "her2")
    assert "\n" not in str(caught.value)
    with pytest.raises(ProfileError, match="is for ki67, not her2"):
        load_profile("ki67-mib1", "her2")


@pytest.mark.parametrize("mpp", [0.5, 0.25])
def test_unstained_cells_beside_a_stained_clone_stay_unstained(mpp):
    """A strong clone's membranes, shared with its unstained neighbours, stay the clone's."""
    size = int(450 / mpp)
    field = draw_cell_field(size, size, (0.6, 0, 0, 0.4), marker="her2", mpp=mpp, seed=11)
    cells = _run(field, "her2")
    confusion = class_confusion(_matching(cells, field), cells.classes, field.classes)
    assert confusion[0, 0] / confusion[0].sum() > 0.97, confusion
    assert confusion[3, 3] / confusion[3].sum() > 0.9, confusion
    truth_percent = 100 * np.mean(field.classes > 0)
    assert abs(100 * np.mean(cells.classes > 0) - truth_percent) < 2, confusion


def test_membranes_drawn_complete_at_40x_are_called_complete():
    """Membranes are drawn a width in um, so 40x fields score as 20x ones."""
    field = draw_cell_field(1600, 1600, (0, 0, 1, 0), marker="her2", mpp=0.25, seed=1)
    cells = _run(field, "her2")
    inner = np.minimum.reduce([cells.table.x, cells.table.y, 1600 - cells.table.x,
                               1600 - cells.table.y]) * field.mpp > 12  # fmt: skip
    assert np.mean(cells.classes[inner] == 2) > 0.9, np.bincount(cells.classes[inner])


def _scattered_ki67(clone_centre=(3000.0, 1000.0), clone_radius_px=600.0):
    """12000 cells over 4 mm² at 0.5 um/px, 5% positive but for one all-positive clone."""
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 4000, (12000, 2)).astype(np.float32)
    zeros = {name: np.zeros(len(xy), np.float32) for name in CellTable.empty().columns()}
    table = CellTable(**zeros)
    table.x, table.y = xy[:, 0], xy[:, 1]
    classes = (rng.random(len(xy)) < 0.05).astype(np.int8)
    classes[np.hypot(*(xy - clone_centre).T) < clone_radius_px] = 2
    return Cells(table, classes, "ki67", 0.5)


def test_ki67_hot_spot_is_the_densest_circle_and_says_where():
    cells = _scattered_ki67()
    spot = hot_spot(cells)
    assert np.hypot(spot.x - 3000, spot.y - 1000) < 100  # within 50 um of the clone's centre
    assert spot.area_mm2 == pytest.approx(0.2) and spot.inside.sum() >= 500  # 3000 cells/mm²
    hot = decide(cells, ki67_method="hot-spot")
    whole = decide(cells)
    assert hot.figures["method"] == "hot spot" and whole.figures["method"] == "global"
    assert hot.percentages["positive"] > 2 * whole.percentages["positive"]
    assert hot.figures["hot_spot"]["n_cells"] == hot.figures["n_counted"]
    assert (round(spot.x, 1), round(spot.y, 1)) == (hot.figures["hot_spot"]["x"],
                                                    hot.figures["hot_spot"]["y"])  # fmt: skip


def test_ki67_hot_spot_grows_to_hold_500_cells():
    cells = _scattered_ki67()
    sparse = cells.take(np.arange(len(cells)) % 12 == 0)  # 250 cells/mm²: 50 in 0.2 mm²
    spot = hot_spot(sparse)
    assert spot.inside.sum() == 500 and spot.area_mm2 > 0.2


def test_unknown_ki67_method_is_one_sentence():
    with pytest.raises(RuleError, match="hot-spot"):
        decide(_scattered_ki67(), ki67_method="hotspot")
