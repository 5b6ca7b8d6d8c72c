"""Automatic H&E <-> IHC registration against the synthetic cases' known transforms."""

from __future__ import annotations

import csv
import json

import cv2
import numpy as np
import pytest

from her2viewer.cli import main
from her2viewer.errors import RegistrationError
from her2viewer.registration import (
    Registration,
    refine_local,
    register_slides,
    registration_from_landmarks,
    warp_map,
)
from her2viewer.slide import open_slide
from tests.reliability.conftest import error_after_progress


def _tissue_points(case) -> np.ndarray:
    """Level-0 IHC points on a 16 px grid over the IHC tissue."""
    ys, xs = np.nonzero(cv2.imread(str(case / "ihc_tissue_mask.png"), 0))
    return np.stack([xs, ys], 1) * 16.0 + 8.0


def _errors(registration: Registration, points: np.ndarray, truth: np.ndarray) -> np.ndarray:
    expected = points @ truth[:2, :2].T + truth[:2, 2]
    return np.hypot(*(registration.transform_points(points) - expected).T)


def _truth(case) -> np.ndarray:
    return np.array(json.loads((case / "truth.json").read_text())["transform_ihc_to_he"])


@pytest.fixture(scope="module")
def cases(ihc_cohort):
    rows = list(csv.DictReader(ihc_cohort.open()))
    by_score = {int(r["ihc_score"]): ihc_cohort.parent / r["case_id"] for r in rows}
    return [by_score[s] for s in sorted(by_score)]


def test_recovers_known_transforms(cases):
    for case in cases:
        with open_slide(case / "he.svs") as he, open_slide(case / "ihc.svs") as ihc:
            registration = register_slides(he, ihc)
        errors = _errors(registration, _tissue_points(case), _truth(case))
        print(
            f"\n{case.name}: landmark error median {np.median(errors):.1f} max {errors.max():.1f}"
            f" px; measured {registration.error_px:.1f} px"
        )
        assert np.median(errors) < 20
        assert errors.max() < 40
        assert registration.quality["dice"] > 0.9
        he_tissue = cv2.imread(str(case / "tissue_mask.png"), 0) > 0
        ihc_tissue = cv2.imread(str(case / "ihc_tissue_mask.png"), 0) > 0
        on_ihc = warp_map(he_tissue, 16, registration.inverse().matrix, ihc_tissue.shape, 16)
        assert on_ihc.dtype == bool
        assert (on_ihc & ihc_tissue).sum() / (on_ihc | ihc_tissue).sum() > 0.95


@pytest.mark.parametrize("change", ["rot90", "flip"])
def test_recovers_rotation_and_flip(cases, tmp_path, change):
    """The IHC slide rotated by 90 degrees or mirrored, saved as a plain image."""
    case = cases[3]
    with open_slide(case / "ihc.svs") as ihc:
        rgb = ihc.read_region((0, 0), 0, (ihc.info.width, ihc.info.height))
    h, w = rgb.shape[:2]
    if change == "rot90":
        image = np.ascontiguousarray(np.rot90(rgb))
        new_to_old = np.array([[0, -1, w - 1], [1, 0, 0], [0, 0, 1.0]])
    else:
        image = np.ascontiguousarray(rgb[:, ::-1])
        new_to_old = np.array([[-1, 0, w - 1], [0, 1, 0], [0, 0, 1.0]])
    path = tmp_path / f"{change}.png"
    cv2.imwrite(str(path), image[..., ::-1])
    with open_slide(case / "he.svs") as he, open_slide(path) as moved:
        registration = register_slides(he, moved)
    points = _tissue_points(case) @ np.linalg.inv(new_to_old)[:2, :2].T
    points += np.linalg.inv(new_to_old)[:2, 2]
    errors = _errors(registration, points, _truth(case) @ new_to_old)
    print(f"\n{change}: landmark error median {np.median(errors):.1f} max {errors.max():.1f} px")
    assert np.median(errors) < 20


def test_unrelated_slides_are_refused(cases):
    with (
        open_slide(cases[0] / "he.svs") as he,
        open_slide(cases[2] / "ihc.svs") as ihc,
        pytest.raises(RegistrationError) as info,
    ):
        register_slides(he, ihc)
    assert "\n" not in str(info.value)


def test_cli_writes_transform_json_and_exits_2_on_failure(cases, tmp_path, capsys):
    out = tmp_path / "reg.json"
    case = cases[1]
    assert main(["register", str(case / "he.svs"), str(case / "ihc.svs"), "-o", str(out)]) == 0
    data = json.loads(out.read_text())
    assert np.array(data["matrix"]).shape == (3, 3)
    assert {"method", "quality", "error_px"} <= set(data)
    loaded = Registration.load(out)
    assert np.allclose(loaded.matrix, data["matrix"])
    other = cases[0] / "ihc.svs"
    assert main(["register", str(case / "he.svs"), str(other), "-o", str(tmp_path / "x")]) == 2
    line = error_after_progress(capsys.readouterr().err)  # after the steps' progress lines
    assert line.startswith("her2viewer: error: registration failed:")
    assert not (tmp_path / "x").exists()


def test_local_refinement_corrects_an_offset(cases):
    case = cases[2]
    truth = _truth(case)
    nudged = np.array([[1, 0, 30.0], [0, 1, -25.0], [0, 0, 1]]) @ truth
    center = (1500.0, 1200.0)
    with open_slide(case / "he.svs") as he, open_slide(case / "ihc.svs") as ihc:
        refined = refine_local(he, ihc, Registration(nudged, "nudged", 0.0), center, 2048)
        with pytest.raises(RegistrationError):
            refine_local(he, ihc, Registration(nudged, "nudged", 0.0), (-5000.0, -5000.0), 1024)
    point = (np.linalg.inv(truth) @ [*center, 1.0])[:2]
    assert np.hypot(*(refined.transform_points(point)[0] - center)) < 3
    assert refined.quality["center_shift_px"] > 30


def test_save_load_inverse_and_landmarks(tmp_path):
    truth = np.array([[0.98, -0.17, 120.0], [0.17, 0.98, -40.0], [0, 0, 1]])
    moving = np.array([[0, 0], [1000, 0], [0, 800], [900, 700]], float)
    fixed = moving @ truth[:2, :2].T + truth[:2, 2]
    registration = registration_from_landmarks(moving, fixed)
    assert np.allclose(registration.matrix, truth)
    assert registration.error_px < 1e-6
    back = Registration.load(registration.save(tmp_path / "r.json"))
    assert np.allclose(back.inverse().transform_points(fixed), moving)


@pytest.mark.parametrize(
    "call",
    [
        lambda p: registration_from_landmarks([[0, 0], [1, 1]], [[0, 0], [1, 1]]),
        lambda p: registration_from_landmarks([[0, 0], [1, 1], [2, 2]], [[0, 0], [1, 1], [2, 2]]),
        lambda p: Registration.load(p / "missing.json"),
        lambda p: Registration.load(p / "bad.json"),
        lambda p: Registration(np.zeros((3, 3)), "x", 0.0),
    ],
)
def test_bad_inputs_raise_one_line_errors(tmp_path, call):
    (tmp_path / "bad.json").write_text('{"matrix": [1, 2]}')
    with pytest.raises(RegistrationError) as info:
        call(tmp_path)
    assert "\n" not in str(info.value)
