"""The annotation model: classes, immutable annotations, hierarchy, measurements, features."""

from __future__ import annotations

import pytest
from shapely.geometry import LineString, MultiPoint, Point, Polygon, box

from her2viewer.annotations.model import (
    DEFAULT_CLASSES,
    UNCLASSIFIED_COLOR,
    Annotation,
    AnnotationDocument,
    AnnotationError,
    DocumentChange,
    PathClass,
)
from her2viewer.geometry.geojson import Feature, features_to_geojson, parse_features


def test_default_classes_are_qupaths():
    colors = {c.name: c.color for c in DEFAULT_CLASSES}
    assert list(colors) == [
        "Tumor",
        "Stroma",
        "Immune cells",
        "Necrosis",
        "Other",
        "Region*",
        "Ignore*",
        "Positive",
        "Negative",
    ]
    assert colors["Tumor"] == (200, 0, 0)
    assert colors["Ignore*"] == (180, 180, 180)


def test_annotation_is_immutable_and_repaired():
    bowtie = Polygon([(0, 0), (10, 10), (10, 0), (0, 10)])
    ann = Annotation(bowtie, class_name="Tumor")
    assert ann.geometry.is_valid and ann.geometry.area == pytest.approx(50)
    with pytest.raises(AttributeError):
        ann.name = "x"
    renamed = ann.replace(name="hot spot")
    assert renamed.id == ann.id and renamed.name == "hot spot" and ann.name == ""
    assert len({ann, renamed, ann.replace()}) == 2  # hashable (sets of selected annotations)


def test_annotation_refuses_unknown_kind_and_empty_geometry():
    with pytest.raises(AnnotationError, match="kind 'blob'"):
        Annotation(box(0, 0, 1, 1), kind="blob")
    with pytest.raises(AnnotationError, match="empty geometry"):
        Annotation(Polygon([(0, 0), (1, 1), (2, 2)]))


def test_mutations_notify_subscribers_in_order():
    doc = AnnotationDocument()
    seen: list[DocumentChange] = []
    doc.subscribe(seen.append)
    a, b, c = (Annotation(box(i, 0, i + 1, 1)) for i in range(3))
    doc._insert([a, c])
    doc._insert([b], 1)
    assert [x.id for x in doc] == [a.id, b.id, c.id]
    removed = doc._remove([a.id, c.id])
    assert removed == [(0, a), (2, c)]
    doc._insert([a, c], [0, 2])
    assert [x.id for x in doc] == [a.id, b.id, c.id]
    doc._put(b.replace(name="b"))
    assert doc.get(b.id).name == "b"
    doc._set_classes([PathClass("Tumor", (1, 2, 3))])
    assert [s.kind for s in seen] == ["added", "added", "removed", "added", "changed", "classes"]
    assert seen[2].ids == (a.id, c.id)
    with pytest.raises(AnnotationError, match="already in the document"):
        doc._insert([a])


def test_hierarchy_is_smallest_covering_area():
    outer = Annotation(box(0, 0, 100, 100), name="outer")
    inner = Annotation(box(10, 10, 50, 50), name="inner")
    point_set = Annotation(MultiPoint([(20, 20), (30, 30)]), kind="points")
    line = Annotation(LineString([(60, 60), (70, 70)]), kind="line")
    outside = Annotation(box(200, 200, 210, 210))
    doc = AnnotationDocument([outer, inner, point_set, line, outside])
    assert doc.hierarchy() == {
        outer.id: None,
        inner.id: outer.id,
        point_set.id: inner.id,
        line.id: outer.id,
        outside.id: None,
    }


def test_measurements_in_um_and_px():
    square = Annotation(box(0, 0, 1000, 1000), class_name="Tumor")
    tumor_points = Annotation(MultiPoint([(1, 1), (2, 2), (5000, 5000)]), "points", "Tumor")
    immune = Annotation(MultiPoint([(3, 3)]), "points", "Immune cells")
    line = Annotation(LineString([(0, 0), (300, 400)]), "line")
    doc = AnnotationDocument([square, tumor_points, immune, line], mpp=0.5)
    m = doc.measurements(square)
    assert m["area_um2"] == pytest.approx(250_000)
    assert m["area_mm2"] == pytest.approx(0.25)
    assert m["perimeter_um"] == pytest.approx(2000)
    assert m["n_points Tumor"] == 2 and m["n_points Immune cells"] == 1
    assert doc.measurements(line)["length_um"] == pytest.approx(250)
    doc._put(tumor_points.replace(geometry=MultiPoint([(1, 1)])))  # counts follow edits
    doc._remove([immune.id])
    m = doc.measurements(square)
    assert m["n_points Tumor"] == 1 and "n_points Immune cells" not in m
    doc._put(tumor_points)
    assert doc.measurements(tumor_points)["n_points"] == 3
    doc.mpp = None
    m = doc.measurements(square)
    assert m["area_px2"] == pytest.approx(1e6) and "area_um2" not in m
    assert m["units"].startswith("px")
    for unknown in (0.0, float("nan"), float("inf"), -1.0):
        doc.mpp = unknown
        assert doc.mpp is None and "area_px2" in doc.measurements(square)
        assert "area_px2" in doc.class_summary()[0]


def test_measurements_include_results():
    ann = Annotation(box(0, 0, 10, 10), results={"ihc_score": 2.0})
    assert AnnotationDocument([ann]).measurements(ann)["ihc_score"] == 2.0


def test_class_summary_counts_and_areas():
    doc = AnnotationDocument(
        [
            Annotation(box(0, 0, 10, 10), class_name="Tumor"),
            Annotation(box(0, 0, 10, 20), class_name="Tumor"),
            Annotation(MultiPoint([(1, 1), (2, 2)]), "points", "Tumor"),
            Annotation(box(0, 0, 1, 1), class_name="Mitosis"),
            Annotation(box(0, 0, 2, 2)),
        ]
    )
    rows = {r["class"]: r for r in doc.class_summary()}
    assert rows["Tumor"]["count"] == 3
    assert rows["Tumor"]["area_px2"] == pytest.approx(300)
    assert rows["Tumor"]["n_points"] == 2
    assert rows["Stroma"]["count"] == 0
    assert rows["Mitosis"]["count"] == 1
    assert rows["Unclassified"]["color"] == UNCLASSIFIED_COLOR
    assert list(rows)[-2:] == ["Mitosis", "Unclassified"]


def test_colors_follow_the_class_list():
    ann = Annotation(box(0, 0, 1, 1), class_name="Tumor")
    doc = AnnotationDocument([ann])
    assert doc.color_of(ann) == (200, 0, 0)
    doc._set_classes([PathClass("Tumor", (1, 2, 3))])
    assert doc.color_of(ann) == (1, 2, 3)
    assert doc.color_of(ann.replace(class_name=None)) == UNCLASSIFIED_COLOR
    unlisted = ann.replace(class_name="Mitosis")
    assert doc.color_of(unlisted) == doc.color_of(unlisted)


def test_features_round_trip_through_geojson():
    outer = Annotation(
        box(0, 0, 100, 100), class_name="Tumor", name="tumour", locked=True, results={"a": 1.0}
    )
    inner = Annotation(box(10, 10, 20, 20), "rectangle", transferred_from="he")
    dots = Annotation(MultiPoint([(5, 5), (6, 6)]), "points", "Positive")
    doc = AnnotationDocument(
        [outer, inner, dots], classes=[*DEFAULT_CLASSES, PathClass("X", (9, 9, 9))]
    )
    data = features_to_geojson(doc.to_features())
    tumor = data["features"][0]["properties"]
    assert tumor["classification"] == {"name": "Tumor", "color": [200, 0, 0]}
    assert tumor["isLocked"] is True and tumor["name"] == "tumour"
    back = AnnotationDocument.from_features(parse_features(data, "test"))
    assert [a.id for a in back] == [outer.id, inner.id, dots.id]
    got = back.get(inner.id)
    assert got.kind == "rectangle" and got.transferred_from == "he" and got.parent_id == outer.id
    assert back.get(outer.id).locked and back.get(outer.id).results == {"a": 1.0}
    assert back.get(dots.id).geometry.equals(dots.geometry)


def test_from_features_reads_qupath_objects():
    features = [
        Feature(Polygon([(0, 0), (9, 0), (9, 9)]), class_name="Gland", color=(1, 2, 3)),
        Feature(LineString([(0, 0), (1, 1), (2, 0)])),
        Feature(LineString([(0, 0), (1, 1)])),
        Feature(Point(3, 3), class_name="Tumor"),
        Feature(box(0, 0, 1, 1), object_type="detection"),
        Feature(box(0, 0, 2, 2), id="same"),
        Feature(box(0, 0, 3, 3), id="same"),
    ]
    doc = AnnotationDocument.from_features(features, mpp=0.25)
    assert [a.kind for a in doc] == ["polygon", "polyline", "line", "points", "polygon", "polygon"]
    assert len({a.id for a in doc}) == 6 and list(doc)[4].id == "same"
    assert doc.path_class("Gland") == PathClass("Gland", (1, 2, 3))
    assert doc.mpp == 0.25
    assert list(doc)[3].geometry.geom_type == "MultiPoint"
