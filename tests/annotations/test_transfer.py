"""Annotations carried across a registered pair, and landmark fits, against the true transform."""

from __future__ import annotations

import json

import numpy as np
import pytest
import shapely

from her2viewer.annotations.model import PROPERTY_KEY, Annotation
from her2viewer.annotations.transfer import (
    fit_landmarks,
    landmark_registration,
    remap,
    transfer,
    transfer_features,
)
from her2viewer.errors import RegistrationError
from her2viewer.geometry.geojson import Feature
from her2viewer.registration import Registration


@pytest.fixture(scope="module")
def ihc_to_he(synthetic_case) -> np.ndarray:
    """The true level-0 IHC -> H&E matrix of a synthetic pair."""
    return np.array(json.loads((synthetic_case / "truth.json").read_text())["transform_ihc_to_he"])


def _shapes() -> list[Annotation]:
    """A parent polygon with a hole, a child ellipse-ish polygon, a line and points."""
    parent = Annotation(
        shapely.Polygon(
            [(800, 700), (1900, 650), (2100, 1500), (900, 1700)],
            [[(1200, 1000), (1500, 1000), (1400, 1300)]],
        ),
        class_name="Tumor",
        name="invasive front",
    )
    return [
        parent,
        Annotation(
            shapely.Point(1600, 1200).buffer(80), class_name="Necrosis", parent_id=parent.id
        ),
        Annotation(shapely.LineString([(700, 600), (1300, 1900)]), kind="line", name="ruler"),
        Annotation(shapely.MultiPoint([(1000, 900), (1700, 1400)]), kind="points"),
    ]


def _mapped(geom, matrix: np.ndarray) -> np.ndarray:
    """Vertices of ``geom`` mapped by ``matrix`` with plain numpy (an independent check)."""
    xy = shapely.get_coordinates(geom)
    return xy @ matrix[:2, :2].T + matrix[:2, 2]


def test_transfer_with_the_true_matrix_is_exact(ihc_to_he):
    anns = _shapes()
    copies = transfer(anns, ihc_to_he, source="he.svs", inverse=True)  # H&E -> IHC
    he_to_ihc = np.linalg.inv(ihc_to_he)
    for ann, copy in zip(anns, copies, strict=True):
        error = np.hypot(
            *(shapely.get_coordinates(copy.geometry) - _mapped(ann.geometry, he_to_ihc)).T
        )
        assert error.max() < 0.01
        assert copy.id != ann.id and copy.transferred_from == "he.svs"
        assert (copy.kind, copy.class_name, copy.name) == (ann.kind, ann.class_name, ann.name)
        assert copy.geometry.geom_type == ann.geometry.geom_type
    assert copies[1].parent_id == copies[0].id  # the child follows its copied parent
    assert len(copies[0].geometry.interiors) == 1  # the hole is carried
    back = transfer(copies, ihc_to_he, source="ihc.svs")
    for ann, again in zip(anns, back, strict=True):
        assert shapely.equals_exact(ann.geometry, again.geometry, tolerance=0.01)


def test_a_child_whose_parent_stays_behind_has_no_parent(ihc_to_he):
    child = _shapes()[1]
    (copy,) = transfer([child], ihc_to_he, source="he")
    assert copy.parent_id is None


def test_landmarks_fitted_from_true_clicks_transfer_within_2_px(ihc_to_he):
    rng = np.random.default_rng(3)
    ihc_clicks = np.round(rng.uniform([300, 300], [2700, 2100], (5, 2)))  # whole pixels
    he_clicks = np.round(ihc_clicks @ ihc_to_he[:2, :2].T + ihc_to_he[:2, 2])
    fit = fit_landmarks(ihc_clicks, he_clicks)
    assert fit.residuals_px.shape == (5,) and fit.residuals_px.max() < 1.5
    assert fit.rms_px == pytest.approx(np.sqrt(np.mean(fit.residuals_px**2)))
    anns = _shapes()
    copies = transfer(anns, fit.matrix, source="ihc")
    for ann, copy in zip(anns, copies, strict=True):
        truth = _mapped(ann.geometry, ihc_to_he)
        assert np.hypot(*(shapely.get_coordinates(copy.geometry) - truth).T).max() < 2.0


@pytest.mark.parametrize(
    ("src", "dst", "fragment"),
    [
        ([(0, 0), (10, 0)], [(0, 0), (10, 0)], "3 or more pairs"),
        ([(0, 0), (10, 0), (20, 0)], [(0, 0), (10, 0)], "3 or more pairs"),
        ([(0, 0), (10, 10), (20, 20)], [(5, 0), (15, 10), (25, 20)], "collinear"),
    ],
)
def test_too_few_or_collinear_landmarks_are_refused_in_one_sentence(src, dst, fragment):
    with pytest.raises(RegistrationError, match=fragment) as info:
        fit_landmarks(src, dst)
    assert str(info.value).count(". ") == 0 and "\n" not in str(info.value)


def test_an_unusable_matrix_is_refused(ihc_to_he):
    with pytest.raises(RegistrationError, match="Cannot carry annotations"):
        transfer(_shapes(), np.zeros((3, 3)), source="he")


def test_copies_follow_a_corrected_registration(ihc_to_he):
    anns = _shapes()
    copies = transfer(anns, ihc_to_he, source="ihc")
    nudged = np.array([[1, 0, 40.0], [0, 1, -25.0], [0, 0, 1]]) @ ihc_to_he
    moved = remap(copies, ihc_to_he, nudged)
    direct = transfer(anns, nudged, source="ihc")
    for copy, follow, want in zip(copies, moved, direct, strict=True):
        assert follow.id == copy.id and follow.transferred_from == "ihc"
        assert shapely.equals_exact(follow.geometry, want.geometry, tolerance=1e-6)


def test_a_landmark_registration_saves_and_reloads(ihc_to_he, tmp_path):
    ihc = np.array([[500, 400], [2500, 600], [1400, 2000], [800, 1800.0]])
    fit = fit_landmarks(ihc, ihc @ ihc_to_he[:2, :2].T + ihc_to_he[:2, 2])
    registration = landmark_registration(fit, moving="ihc.svs", fixed="he.svs")
    loaded = Registration.load(registration.save(tmp_path / "landmarks.json"))
    assert loaded.method == "landmarks" and (loaded.moving, loaded.fixed) == ("ihc.svs", "he.svs")
    np.testing.assert_allclose(loaded.matrix, ihc_to_he, atol=1e-6)
    assert loaded.quality["landmarks"] == 4 and len(loaded.quality["residuals_px"]) == 4
    assert loaded.error_px == pytest.approx(fit.rms_px)


def test_a_file_transfer_drops_the_pane_copy_link():
    link = {"source": "abc", "matrix": [[1, 0, 0], [0, 1, 0]]}
    feature = Feature(
        geometry=shapely.box(0, 0, 10, 10),
        properties={PROPERTY_KEY: {"copy_link": link, "parent_id": "p1"}},
    )
    (copy,) = transfer_features([feature], np.eye(3), source="he.svs")
    assert copy.properties[PROPERTY_KEY] == {"parent_id": "p1", "transferred_from": "he.svs"}
    assert feature.properties[PROPERTY_KEY]["copy_link"] == link  # the input is left alone
