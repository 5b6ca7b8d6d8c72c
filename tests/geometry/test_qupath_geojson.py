"""QuPath GeoJSON in every variant QuPath writes: reading, repair, round trips, errors."""

import json

import pytest
import shapely
from shapely.geometry import LineString, MultiPoint, Point, Polygon

from her2viewer.errors import Her2ViewerError, OutputError
from her2viewer.geometry.geojson import (
    Feature,
    GeoJSONError,
    features_to_geojson,
    parse_features,
    read_features,
    write_features,
)
from tests.reliability import conftest as reliability
from tests.reliability.conftest import fill_disk, leftovers

tiny_disk = reliability.tiny_disk  # the fixture: a real small file system

SQUARE = {"type": "Polygon", "coordinates": [[[0, 0], [10, 0], [10, 10], [0, 10], [0, 0]]]}

#: QuPath 0.4+: FeatureCollection, uuid id, objectType, classification {name, color}.
QUPATH_04 = {
    "type": "FeatureCollection",
    "features": [
        {
            "type": "Feature",
            "id": "5c4a7cc0-3f7e-4d59-9a7e-1d5c3f1f0d11",
            "geometry": {
                "type": "Polygon",
                "coordinates": [
                    [[0, 0], [100, 0], [100, 100], [0, 100], [0, 0]],
                    [[10, 10], [20, 10], [20, 20], [10, 20], [10, 10]],
                ],
            },
            "properties": {
                "objectType": "annotation",
                "name": "core 1",
                "classification": {"name": "Tumor", "color": [200, 0, 0]},
                "isLocked": True,
                "measurements": {"Num Detections": 12, "Area": 9900.0},
            },
        },
        {
            "type": "Feature",
            "id": "8b0f4d9a-0000-4000-8000-000000000002",
            "geometry": {"type": "Polygon", "coordinates": [[[1, 1], [3, 1], [3, 3], [1, 1]]]},
            "nucleusGeometry": {
                "type": "Polygon",
                "coordinates": [[[2, 1], [3, 2], [2, 2], [2, 1]]],
            },
            "properties": {
                "objectType": "cell",
                "classification": {"name": "Positive", "color": [200, 50, 50]},
            },
        },
    ],
}

#: QuPath 0.2/0.3: a bare list, the Java class name as id, colorRGB, measurements as a list.
QUPATH_02 = [
    {
        "type": "Feature",
        "id": "PathDetectionObject",
        "geometry": {"type": "MultiPolygon", "coordinates": [SQUARE["coordinates"]]},
        "properties": {
            "classification": {"name": "Stroma", "colorRGB": -6895466},
            "isLocked": False,
            "measurements": [
                {"name": "Nucleus: Area", "value": 31.5},
                {"name": "x", "value": None},
            ],
        },
    },
    {
        "type": "Feature",
        "id": "PathAnnotationObject",
        "geometry": {"type": "LineString", "coordinates": [[0, 0], [30, 40]]},
        "properties": {"classification": {"name": "Other", "colorRGB": -16777216}},
    },
]


def _feature(geometry: dict, **properties) -> dict:
    return {"type": "Feature", "geometry": geometry, "properties": properties}


def test_qupath_04_feature_collection_reads_every_property():
    tumour, cell = parse_features(QUPATH_04, "a.geojson")
    assert tumour.id == "5c4a7cc0-3f7e-4d59-9a7e-1d5c3f1f0d11"
    assert tumour.object_type == "annotation" and tumour.name == "core 1" and tumour.locked
    assert (tumour.class_name, tumour.color) == ("Tumor", (200, 0, 0))
    assert tumour.measurements == {"Num Detections": 12.0, "Area": 9900.0}
    assert len(tumour.geometry.interiors) == 1 and tumour.geometry.area == 9900
    assert cell.object_type == "cell" and cell.nucleus.geom_type == "Polygon"
    assert cell.nucleus.area == pytest.approx(0.5)


def test_qupath_02_bare_list_with_packed_colour_and_measurement_list():
    detection, line = parse_features(QUPATH_02, "b.geojson")
    assert detection.object_type == "detection" and line.object_type == "annotation"
    assert detection.color == (150, 200, 150) and line.color == (0, 0, 0)
    assert detection.measurements["Nucleus: Area"] == 31.5
    assert detection.geometry.geom_type == "MultiPolygon"
    assert line.geometry.length == 50
    assert detection.id != "PathDetectionObject" and len(detection.id) == 36
    assert detection.id != line.id


def test_derived_class_names_and_quoted_numbers():
    raw = _feature(
        SQUARE,
        classification={"names": ["Tumor", "Positive"], "color": [1, 2, 3]},
        measurements={"a": "NaN", "b": "2.5", "c": "text", "d": True},
        isLocked="yes",
    )
    (feature,) = parse_features(raw, "f.geojson")
    assert feature.class_name == "Tumor: Positive" and not feature.locked
    assert list(feature.measurements) == ["a", "b"] and feature.measurements["b"] == 2.5


def test_one_feature_and_every_geometry_type():
    geometries = [
        SQUARE,
        {"type": "MultiPolygon", "coordinates": [SQUARE["coordinates"]]},
        {"type": "LineString", "coordinates": [[0, 0], [1, 1]]},
        {"type": "MultiLineString", "coordinates": [[[0, 0], [1, 1]], [[2, 2], [3, 3]]]},
        {"type": "Point", "coordinates": [5, 6]},
        {"type": "MultiPoint", "coordinates": [[5, 6], [7, 8]]},
    ]
    for geometry in geometries:
        (feature,) = parse_features(_feature(geometry), "c.geojson")
        assert feature.geometry.geom_type == geometry["type"]
        assert feature.object_type == "annotation" and feature.class_name is None


def test_bow_tie_and_unclosed_ring_are_repaired():
    bow_tie = {"type": "Polygon", "coordinates": [[[0, 0], [10, 10], [10, 0], [0, 10], [0, 0]]]}
    unclosed = {"type": "Polygon", "coordinates": [[[0, 0], [4, 0], [4, 4], [0, 4]]]}
    tie, ring = parse_features([_feature(bow_tie), _feature(unclosed)], "d.geojson")
    assert tie.geometry.is_valid and tie.geometry.geom_type == "MultiPolygon"
    assert tie.geometry.area == pytest.approx(50)
    assert ring.geometry.is_valid and ring.geometry.area == 16


def test_round_trip_keeps_everything_to_a_hundredth_of_a_pixel(tmp_path):
    features = parse_features(QUPATH_04, "a.geojson") + [
        Feature(
            Polygon([(0.123456, 0.987654), (1000.555, 3.14159), (500.001, 777.777)]),
            object_type="detection",
            class_name="Immune cells",
            color=(160, 90, 160),
            properties={"plane": {"c": -1, "z": 0, "t": 0}},
        ),
        Feature(MultiPoint([(1.005, 2.004), (3.5, 4.25)]), name="points"),
    ]
    path = tmp_path / "out.geojson"
    write_features(path, features)
    back = read_features(path)
    assert [f.id for f in back] == [f.id for f in features]
    for before, after in zip(features, back, strict=True):
        assert after.geometry.equals_exact(before.geometry, tolerance=0.01)
        assert (after.class_name, after.color, after.name, after.locked) == (
            before.class_name,
            before.color,
            before.name,
            before.locked,
        )
        assert after.object_type == before.object_type
        assert after.measurements == before.measurements
        assert after.properties == before.properties
    assert back[1].nucleus.equals_exact(features[1].nucleus, tolerance=0.01)


def test_written_as_qupath_04_writes_it():
    feature = Feature(Point(1, 2), class_name="Tumor", color=(200, 0, 0), locked=True)
    (written,) = features_to_geojson([feature])["features"]
    assert written["type"] == "Feature" and written["id"] == feature.id
    assert written["properties"]["objectType"] == "annotation"
    assert written["properties"]["classification"] == {"name": "Tumor", "color": [200, 0, 0]}
    assert written["properties"]["isLocked"] is True
    assert features_to_geojson([feature], as_list=True) == [written]


def test_nan_measurement_is_written_as_valid_json(tmp_path):
    path = tmp_path / "nan.geojson"
    write_features(path, [Feature(Point(0, 0), measurements={"m": float("nan")})])
    json.loads(path.read_text(), parse_constant=pytest.fail)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("{not json", "is not a readable GeoJSON file (not JSON"),
        ('{"type": "Polygon", "coordinates": []}', "is not a GeoJSON FeatureCollection"),
        ('[{"type": "Feature", "geometry": null}]', "feature 1 of"),
        (
            '[{"type": "Feature", "geometry": {"type": "Point", "coordinates": [0, 0]}},'
            ' {"type": "Feature", "geometry": {"type": "Circle", "coordinates": [0, 0]}}]',
            "feature 2 of",
        ),
        ('[{"type": "Feature", "geometry": {"type": "Point", "coordinates": [NaN, 0]}}]', "finite"),
        ('[{"type": "Feature", "geometry": {"type": "Polygon", "coordinates": "x"}}]', "invalid"),
        (
            '[{"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[[0, 0]]]}}]',
            "invalid",
        ),
        ("[42]", "not a GeoJSON Feature"),
    ],
)
def test_bad_files_are_one_sentence_naming_the_file(tmp_path, text, fragment):
    path = tmp_path / "bad.geojson"
    path.write_text(text)
    with pytest.raises(GeoJSONError) as info:
        read_features(path)
    message = str(info.value)
    assert isinstance(info.value, Her2ViewerError)
    assert fragment in message and str(path) in message
    assert "\n" not in message and message.endswith(".") and message.count(". ") == 0


def test_missing_file_is_one_sentence(tmp_path):
    with pytest.raises(GeoJSONError, match="does not exist"):
        read_features(tmp_path / "missing.geojson")


def test_full_disk_leaves_nothing_half_written(tiny_disk):
    folder = tiny_disk(64)
    fill_disk(folder, leave_bytes=512)
    features = [Feature(LineString([(i, 0), (i, 1000)])) for i in range(2000)]
    with pytest.raises(OutputError):
        write_features(folder / "big.geojson", features)
    assert not (folder / "big.geojson").exists() and leftovers(folder) == []


def test_repaired_geometries_are_valid_shapely():
    (feature,) = parse_features(_feature(SQUARE), "e.geojson")
    assert shapely.is_valid(feature.geometry)
