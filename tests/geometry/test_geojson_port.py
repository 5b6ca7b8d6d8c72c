"""The tissue GeoJSON writer and the overlay VectorLayer go through geometry/ (one reader)."""

import json

import numpy as np
import pytest

from her2viewer.geometry.geojson import GeoJSONError, read_features
from her2viewer.overlay.layers import OverlayError, VectorLayer
from her2viewer.tissue.geojson import (
    polygons_to_geojson,
    read_geojson_polygons,
    write_geojson,
)

OUTER = [[0, 0], [400, 0], [400, 400], [0, 400], [0, 0]]
HOLE = [[100, 100], [300, 100], [300, 300], [100, 300], [100, 100]]
INNER = [[20, 20], [60, 20], [60, 60], [20, 60], [20, 20]]


def _write(tmp_path, data) -> str:
    path = tmp_path / "in.geojson"
    path.write_text(json.dumps(data))
    return path


def _feature(geometry: dict, name: str) -> dict:
    return {
        "type": "Feature",
        "geometry": geometry,
        "properties": {"classification": {"name": name, "colorRGB": -65536}},
    }


def test_vector_layer_hit_test_respects_holes_and_picks_the_smallest(tmp_path):
    path = _write(
        tmp_path,
        [
            _feature({"type": "Polygon", "coordinates": [OUTER, HOLE]}, "Tumor"),
            _feature({"type": "Polygon", "coordinates": [INNER]}, "Necrosis"),
        ],
    )
    layer = VectorLayer.from_geojson(path)
    assert layer.value_at(50, 350) == "Tumor"
    assert layer.value_at(200, 200) is None  # inside the hole
    assert layer.value_at(40, 40) == "Necrosis"  # nested: the smaller one


def test_vector_layer_draws_lines_open_and_fills_around_holes(tmp_path):
    line = {"type": "LineString", "coordinates": [[0, 0], [400, 0], [400, 400]]}
    path = _write(
        tmp_path,
        [
            _feature({"type": "Polygon", "coordinates": [OUTER, HOLE]}, "Tumor"),
            _feature(line, "Margin"),
        ],
    )
    filled = VectorLayer.from_geojson(path, fill_alpha=128)
    rgba = filled.render((0, 0, 400, 400), (40, 40))
    assert rgba[5, 5, 3] > 0 and rgba[20, 20, 3] == 0  # filled tissue, empty hole
    only_line = VectorLayer("line", lines=[np.array(line["coordinates"], float)])
    drawn = only_line.render((0, 0, 400, 400), (40, 40))
    assert drawn[0, 20, 3] > 0 and drawn[20, 39, 3] > 0
    assert drawn[20, 0, 3] == 0 and drawn[39, 20, 3] == 0  # not closed back to the start


def test_vector_layer_errors_are_the_geojson_sentence(tmp_path):
    path = _write(tmp_path, [{"type": "Feature", "geometry": {"type": "Circle"}}])
    with pytest.raises(OverlayError, match="feature 1 of .*unsupported geometry type 'Circle'"):
        VectorLayer.from_geojson(path)


def test_tissue_geojson_is_qupath_04_with_ids_and_reads_back(tmp_path):
    collection = polygons_to_geojson([np.array(OUTER[:-1])], [[np.array(HOLE[:-1])]])
    path = write_geojson(tmp_path / "tissue.geojson", collection)
    (feature,) = read_features(path)
    assert feature.id == collection["features"][0]["id"] and feature.color == (0, 160, 0)
    assert feature.geometry.area == 400 * 400 - 200 * 200
    ((name, rings),) = read_geojson_polygons(path)
    assert name == "Tissue" and len(rings) == 2 and rings[0][0].tolist() == rings[0][-1].tolist()


def test_read_geojson_polygons_repairs_and_refuses_in_one_sentence(tmp_path):
    bow_tie = {"type": "Polygon", "coordinates": [[[0, 0], [10, 10], [10, 0], [0, 10], [0, 0]]]}
    polygons = read_geojson_polygons(_write(tmp_path, [_feature(bow_tie, "Tumor")]))
    assert [name for name, _ in polygons] == ["Tumor", "Tumor"]  # the two lobes
    bad = tmp_path / "bad.geojson"
    bad.write_text("not json")
    with pytest.raises(GeoJSONError, match="bad.geojson is not a readable GeoJSON file"):
        read_geojson_polygons(bad)
