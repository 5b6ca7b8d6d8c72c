"""Regions of interest: chosen annotations minus Ignore*, masks, patch centres, files, errors."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import shapely

from her2viewer.annotations.formats import write_annotations
from her2viewer.annotations.roi import (
    Region,
    RoiError,
    load_region,
    region_from_features,
    region_summary,
    region_text,
    summary_region,
)
from her2viewer.geometry.geojson import Feature, write_features
from her2viewer.slide.base import SlideInfo


def _features() -> list[Feature]:
    return [
        Feature(shapely.box(0, 0, 100, 100), class_name="Tumor"),
        Feature(shapely.box(50, 0, 150, 100), class_name="Tumor"),
        Feature(shapely.box(20, 20, 40, 40), class_name="Ignore*"),
        Feature(shapely.box(300, 300, 400, 400), class_name="Stroma"),
        Feature(shapely.LineString([(0, 0), (10, 10)]), class_name="Tumor"),
        Feature(shapely.box(500, 500, 600, 600), object_type="detection", class_name="Tumor"),
    ]


def _info(width: int = 1000, height: int = 800) -> SlideInfo:
    return SlideInfo("/data/slide.svs", "test", width, height, (), 0.5, 0.5, 20, None, (), "x")


def test_region_is_the_union_of_a_class_minus_ignore_and_says_so():
    region = region_from_features(_features(), ["tumor"], source="/data/tumor.geojson")
    assert region.geometry.area == pytest.approx(150 * 100 - 20 * 20)
    assert not region.contains(30, 30) and region.contains(120, 50)
    assert region.description == (
        "2 tumor annotations (minus 1 Ignore*) from tumor.geojson; 1 line/point annotation left out"
    )
    assert len(region.ids) == 2


def test_default_is_every_area_annotation_but_ignore_and_detections():
    region = region_from_features(_features())
    assert region.geometry.area == pytest.approx(150 * 100 - 20 * 20 + 100 * 100)
    assert not region.contains(550, 550)  # a detection is not a region
    both = region_from_features(_features(), ["Stroma", "TUMOR"])
    assert both.geometry.area == pytest.approx(region.geometry.area)


def test_an_ignore_detection_is_not_subtracted():
    features = [
        Feature(shapely.box(0, 0, 100, 100), class_name="Tumor"),
        Feature(shapely.box(0, 0, 50, 50), object_type="detection", class_name="Ignore*"),
    ]
    assert region_from_features(features).geometry.area == pytest.approx(100 * 100)


def test_selected_ids_only():
    features = _features()
    region = region_from_features(features, ids=[features[3].id])
    assert region.geometry.equals(features[3].geometry)


def test_missing_class_names_the_file_and_the_classes_there():
    with pytest.raises(RoiError) as error:
        region_from_features(_features(), ["Necrosis"], source="tumor.geojson")
    assert str(error.value) == (
        "No annotation of class Necrosis in tumor.geojson; "
        "the classes there are Ignore*, Stroma, Tumor."
    )


def test_lines_and_points_have_no_area():
    lines = [Feature(shapely.MultiPoint([(1, 1), (2, 2)]), class_name="Tumor")]
    with pytest.raises(RoiError, match="lines or points; a region needs an area"):
        region_from_features(lines, source="points.geojson")


def test_nothing_left_once_ignore_is_subtracted():
    features = [
        Feature(shapely.box(10, 10, 20, 20), class_name="Tumor"),
        Feature(shapely.box(0, 0, 50, 50), class_name="Ignore*"),
    ]
    with pytest.raises(RoiError, match="Nothing is left"):
        region_from_features(features)


def test_mask_takes_pixel_centres_with_holes_and_islands():
    outer = shapely.Polygon(
        [(0, 0), (160, 0), (160, 160), (0, 160)], [[(40, 40), (120, 40), (120, 120), (40, 120)]]
    )
    island = shapely.box(64, 64, 96, 96)
    region = Region(shapely.union_all([outer, island]), "ring and island")
    mask = region.mask((12, 12), 16)
    centres = (np.arange(12) + 0.5) * 16
    xx, yy = np.meshgrid(centres, centres)
    expected = shapely.contains_xy(region.geometry, xx, yy)
    assert (mask == expected).all()
    assert mask[0, 0] and not mask[3, 3] and mask[4, 4] and not mask[11, 11]
    window = region.mask((2, 2), 8, origin=(64, 64))  # entirely inside the island
    assert window.all()
    assert not region.mask((2, 2), 8, origin=(500, 500)).any()


def test_patch_centres_decide():
    region = Region(shapely.box(0, 0, 100, 100), "box")
    coords = np.array([[0, 0], [60, 60], [90, 0]])
    assert region.contains_patches(coords, 30).tolist() == [True, True, False]


def test_area_in_micrometres_or_pixels():
    region = Region(shapely.box(0, 0, 1000, 2000), "box")
    assert region.summary(0.5) == {
        "region": "box",
        "region_area_um2": 500000.0,
        "region_area_mm2": 0.5,
    }
    assert region.summary(None) == {"region": "box", "region_area_px2": 2000000.0}
    assert region_summary(None, 0.5) == {"region": None}
    assert summary_region({"score": 3, **region.summary(0.5)}) == region.summary(0.5)
    assert region_text(region.summary(0.5)) == "box, 0.5 mm²"
    assert "no pixel size" in region_text(region.summary(None))
    assert region_text({"region": None}) == "whole slide"


def test_on_slide_clips_and_refuses_a_region_off_the_slide():
    region = Region(shapely.box(900, 700, 1100, 900), "corner")
    assert region.on_slide(_info()).geometry.area == pytest.approx(100 * 100)
    with pytest.raises(RoiError) as error:
        Region(shapely.box(2000, 2000, 2100, 2100), "far").on_slide(_info())
    assert "lies outside slide.svs (1000 x 800 px)" in str(error.value)


def test_transformed_and_pickled():
    region = Region(shapely.box(0, 0, 10, 10), "box", ("a",))
    moved = region.transformed(np.array([[1, 0, 5], [0, 1, 7], [0, 0, 1]]), "moved")
    assert moved.geometry.bounds == (5, 7, 15, 17) and moved.description == "box, moved"
    copy = pickle.loads(pickle.dumps(moved))
    assert copy.contains(6, 8) and copy.key == moved.key != region.key


def test_load_region_reads_a_geojson_file(tmp_path):
    path = tmp_path / "roi.geojson"
    write_features(path, _features())
    region = load_region(path, ["Stroma"])
    assert region.geometry.equals(shapely.box(300, 300, 400, 400))
    assert region.description == "1 Stroma annotation (minus 1 Ignore*) from roi.geojson"


def test_load_region_reads_asap_and_imagescope_xml(tmp_path):
    for fmt in ("asap", "imagescope"):
        path = tmp_path / f"{fmt}.xml"
        write_annotations(path, _features()[:4], format=fmt)
        region = load_region(path, ["Tumor"])
        assert region.geometry.area == pytest.approx(150 * 100 - 20 * 20), fmt
