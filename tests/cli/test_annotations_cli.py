"""The ``her2viewer annotations`` verbs: convert, measure, transfer, import, export."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PIL import Image
from shapely.geometry import LineString, MultiPoint, box

from her2viewer.annotations.formats import read_annotations
from her2viewer.annotations.store import store_path
from her2viewer.cli.main import main
from her2viewer.geometry.geojson import Feature, read_features, write_features
from her2viewer.geometry.shapes import apply_matrix
from her2viewer.registration import Registration
from her2viewer.slide import open_slide
from tests.reliability.conftest import assert_one_line_error, one_line_error, run_verb

TOLERANCE_PX = 0.01


@pytest.fixture()
def drawn(tmp_path):
    """A GeoJSON file: a 100 x 200 px rectangle, a 30-40-50 line and three points."""
    features = [
        Feature(
            box(1000, 1000, 1100, 1200), class_name="Tumor", color=(200, 0, 0), name="=HYPERLINK(x)"
        ),
        Feature(LineString([(0, 0), (30, 40)]), name="ruler"),
        Feature(MultiPoint([(1010, 1010), (1020, 1020), (1030, 1030)]), class_name="Positive"),
    ]
    path = tmp_path / "drawn.geojson"
    write_features(path, features)
    return path


@pytest.fixture()
def plain_png(tmp_path):
    """A small image slide that records no pixel size (its own pixels: its own store)."""
    path = tmp_path / "plain.png"
    pixels = np.random.default_rng().integers(0, 256, (300, 400, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def test_convert_to_asap_and_imagescope_and_back(tmp_path, drawn, capsys):
    for fmt in ("asap", "imagescope"):
        xml = tmp_path / f"{fmt}.xml"
        assert main(["annotations", "convert", str(drawn), str(xml), "--format", fmt]) == 0
        assert main(["annotations", "convert", str(xml), str(tmp_path / f"{fmt}.geojson")]) == 0
        back = {f.id: f for f in read_features(tmp_path / f"{fmt}.geojson")}
        for feature in read_features(drawn):
            assert back[feature.id].geometry.hausdorff_distance(feature.geometry) < TOLERANCE_PX
            assert back[feature.id].class_name == feature.class_name
    assert "wrote 3 objects" in capsys.readouterr().out


def test_convert_to_xml_needs_a_format(tmp_path, drawn, capsys):
    assert main(["annotations", "convert", str(drawn), str(tmp_path / "out.xml")]) == 2
    one_line_error(capsys, "out.xml", "--format asap or --format imagescope")
    assert not (tmp_path / "out.xml").exists()


def test_measure_on_the_synthetic_slide_in_micrometres(synthetic_case, drawn, tmp_path, capsys):
    csv_path = tmp_path / "measures.csv"
    slide = str(synthetic_case / "he.svs")
    argv = ["annotations", "measure", slide, str(drawn), "--json", "-o", str(csv_path)]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["mpp"] == pytest.approx(0.5) and "note" not in result
    rect, ruler, points = result["objects"]
    assert (rect["class"], rect["kind"]) == ("Tumor", "polygon")
    assert rect["area_um2"] == pytest.approx(100 * 200 * 0.25)
    assert rect["area_mm2"] == pytest.approx(100 * 200 * 0.25 / 1e6)
    assert rect["perimeter_um"] == pytest.approx(600 * 0.5)
    assert (ruler["kind"], ruler["length_um"], ruler["area_um2"]) == ("line", 25.0, None)
    assert (points["kind"], points["n_points"]) == ("points", 3)
    with csv_path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert rows[0]["name"] == "'=HYPERLINK(x)"  # formula-escaped
    assert float(rows[0]["area_um2"]) == pytest.approx(5000.0)


def test_measure_without_pixel_size_says_pixels(plain_png, drawn, capsys):
    assert main(["annotations", "measure", str(plain_png), str(drawn), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["note"] == "slide has no pixel size; measures are in level-0 pixels"
    rect = result["objects"][0]
    assert rect["area_px2"] == 20000 and rect["perimeter_px"] == 600 and "area_um2" not in rect
    assert main(["annotations", "measure", str(plain_png), str(drawn)]) == 0
    out = capsys.readouterr().out
    assert "area_px2" in out and "20,000.0" in out and "note: slide has no pixel size" in out


def test_transfer_then_inverse_returns_the_input(tmp_path, drawn, capsys):
    angle = np.deg2rad(7.0)
    matrix = np.array(
        [
            [1.02 * np.cos(angle), -np.sin(angle), 153.25],
            [np.sin(angle), 0.98 * np.cos(angle), -87.5],
            [0, 0, 1],
        ]
    )
    reg = tmp_path / "reg.json"
    Registration(matrix, "test", 0.0, fixed="he.svs", moving="ihc.svs").save(reg)
    moved, back = tmp_path / "on_he.geojson", tmp_path / "back.geojson"
    assert (
        main(["annotations", "transfer", str(drawn), "--transform", str(reg), "-o", str(moved)])
        == 0
    )
    argv = ["annotations", "transfer", str(moved), "--transform", str(reg), "--inverse"]
    assert main([*argv, "-o", str(back)]) == 0
    original = read_features(drawn)
    mapped = read_features(moved)
    assert mapped[0].properties["her2viewer"]["transferred_from"] == "ihc.svs"
    expected = apply_matrix(original[0].geometry, matrix)
    assert mapped[0].geometry.hausdorff_distance(expected) < TOLERANCE_PX
    for before, after in zip(original, read_features(back), strict=True):
        assert after.geometry.hausdorff_distance(before.geometry) < TOLERANCE_PX
        assert after.properties["her2viewer"]["transferred_from"] == "he.svs"


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (None, "no such registration file"),
        ("{not json", "is not a registration JSON file"),
        ('{"matrix": [[1, 0], [0, 1]], "method": "x", "error_px": 0}', "3x3"),
    ],
)
def test_transfer_refuses_a_bad_registration(tmp_path, drawn, capsys, content, fragment):
    reg = tmp_path / "reg.json"
    if content is not None:
        reg.write_text(content)
    out = tmp_path / "out.geojson"
    argv = ["annotations", "transfer", str(drawn), "--transform", str(reg), "-o", str(out)]
    assert main(argv) == 2
    one_line_error(capsys, "reg.json", fragment)
    assert not out.exists()


def test_a_doctype_is_refused_on_the_command_line(tmp_path):
    bad = tmp_path / "evil.xml"
    bad.write_text('<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><Annotations/>')
    result = run_verb("annotations", "convert", str(bad), str(tmp_path / "out.geojson"))
    assert_one_line_error(result, "evil.xml", "DOCTYPE")
    assert not (tmp_path / "out.geojson").exists()


def test_import_then_export_through_the_slide_store(plain_png, drawn, tmp_path, capsys):
    slide = str(plain_png)
    with open_slide(plain_png) as opened:
        path = store_path(opened.info.fingerprint)
    detection = Feature(box(0, 0, 5, 5), object_type="detection", class_name="Tumor")
    write_features(tmp_path / "with_cells.geojson", [*read_features(drawn), detection])
    assert main(["annotations", "import", slide, str(tmp_path / "with_cells.geojson")]) == 0
    out = capsys.readouterr().out
    assert "imported 3 annotations" in out and "1 detections/cells not imported" in out
    assert path.is_file()
    exported = tmp_path / "exported.xml"
    assert main(["annotations", "export", slide, str(exported), "--format", "imagescope"]) == 0
    back = {f.id: f for f in read_annotations(exported)}
    for feature in read_features(drawn):
        twin = back[feature.id]
        assert twin.geometry.hausdorff_distance(feature.geometry) < TOLERANCE_PX
        assert twin.class_name == feature.class_name
    assert main(["annotations", "import", slide, str(exported)]) == 0  # same ids: new copies
    assert "(6 stored)" in capsys.readouterr().out
    assert main(["annotations", "import", slide, str(drawn), "--replace"]) == 0
    assert "(3 stored, 6 replaced)" in capsys.readouterr().out


def test_export_of_a_slide_without_annotations_is_refused(plain_png, tmp_path, capsys):
    out = tmp_path / "none.geojson"
    assert main(["annotations", "export", str(plain_png), str(out)]) == 2
    one_line_error(capsys, "plain.png has no stored annotations")
    assert not out.exists()
