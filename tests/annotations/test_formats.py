"""ASAP and ImageScope XML and the format chooser: round trips, real-looking files, refusals."""

from __future__ import annotations

import pytest
from shapely.geometry import LineString, MultiPoint, MultiPolygon, Point, Polygon, box

from her2viewer.annotations.asap import read_asap
from her2viewer.annotations.formats import (
    AnnotationFormatError,
    detect_format,
    read_annotations,
    write_annotations,
)
from her2viewer.annotations.imagescope import read_imagescope
from her2viewer.errors import OutputError
from her2viewer.geometry.geojson import Feature, read_features, write_features
from tests.reliability.conftest import fill_disk, leftovers, tiny_disk  # noqa: F401

TOLERANCE_PX = 0.01


def sample_features() -> list[Feature]:
    """One object of every kind: holes, several polygons, rectangle, lines, points."""
    tumor = (200, 0, 0)
    return [
        Feature(
            Polygon(
                [(1000.25, 2000.5), (1800.75, 2010.125), (1750.0, 2600.0), (990.0, 2550.5)],
                [[(1200.0, 2200.0), (1300.0, 2200.0), (1300.0, 2300.0), (1200.0, 2300.0)]],
            ),
            class_name="Tumor",
            color=tumor,
            name="invasive front",
        ),
        Feature(box(3000.5, 3000.5, 3400.5, 3200.5), class_name="Stroma", color=(150, 200, 150)),
        Feature(
            MultiPolygon([box(0, 5000, 100, 5100), box(300, 5000, 400, 5100)]),
            class_name="Tumor",
            color=tumor,
            locked=True,
        ),
        Feature(LineString([(10.5, 10.5), (510.5, 310.25)]), name="ruler"),
        Feature(
            LineString([(10, 900), (400, 950.5), (800, 700)]),
            class_name="Other",
            color=(255, 200, 0),
        ),
        Feature(Point(1500.5, 2400.5), class_name="Positive", color=(200, 50, 50)),
        Feature(
            MultiPoint([(1400, 2300), (1450.25, 2350.75), (1600, 2100)]),
            class_name="Negative",
            color=(90, 90, 180),
        ),
    ]


def assert_same(original: list[Feature], back: list[Feature]) -> None:
    """Check ``back`` holds every object of ``original``: geometry to 0.01 px, class, colour."""
    by_id = {f.id: f for f in back}
    assert sorted(by_id) == sorted(f.id for f in original)
    for feature in original:
        twin = by_id[feature.id]
        assert twin.geometry.geom_type == feature.geometry.geom_type, feature
        assert twin.geometry.hausdorff_distance(feature.geometry) < TOLERANCE_PX, feature
        assert twin.geometry.symmetric_difference(feature.geometry).area < TOLERANCE_PX
        assert (twin.class_name, twin.color) == (feature.class_name, feature.color)
        assert (twin.name or None, twin.locked) == (feature.name, feature.locked)


@pytest.mark.parametrize("fmt", ["asap", "imagescope"])
def test_geojson_xml_geojson_round_trip_keeps_geometry_and_classes(tmp_path, fmt):
    original = sample_features()
    write_features(tmp_path / "in.geojson", original)
    write_annotations(tmp_path / "mid.xml", read_annotations(tmp_path / "in.geojson"), fmt)
    assert detect_format(tmp_path / "mid.xml") == fmt
    write_annotations(tmp_path / "out.geojson", read_annotations(tmp_path / "mid.xml"))
    assert_same(original, read_features(tmp_path / "out.geojson"))


def test_asap_holes_are_ignore_polygons_tied_to_their_outline(tmp_path):
    write_annotations(tmp_path / "a.xml", sample_features()[:1], "asap")
    text = (tmp_path / "a.xml").read_text()
    assert 'PartOfGroup="Ignore*"' in text and '<Group Name="Ignore*"' in text
    assert 'Type="Measurement"' not in text
    (feature,) = read_asap(tmp_path / "a.xml")
    assert len(feature.geometry.interiors) == 1


ASAP_FILE = """<?xml version="1.0"?>
<ASAP_Annotations>
\t<Annotations>
\t\t<Annotation Name="Annotation 0" Type="Polygon" PartOfGroup="metastases" Color="#F4FA58">
\t\t\t<Coordinates>
\t\t\t\t<Coordinate Order="2" X="1.2600e+04" Y="5.3100e+04" />
\t\t\t\t<Coordinate Order="0" X="12000.5" Y="52000.25" />
\t\t\t\t<Coordinate Order="1" X="13000" Y="52100" />
\t\t\t</Coordinates>
\t\t</Annotation>
\t\t<Annotation Name="Annotation 1" Type="Rectangle" PartOfGroup="None" Color="#F4FA58">
\t\t\t<Coordinates>
\t\t\t\t<Coordinate Order="0" X="100" Y="200" />
\t\t\t\t<Coordinate Order="1" X="300" Y="200" />
\t\t\t\t<Coordinate Order="2" X="300" Y="260" />
\t\t\t\t<Coordinate Order="3" X="100" Y="260" />
\t\t\t</Coordinates>
\t\t</Annotation>
\t\t<Annotation Name="Annotation 2" Type="Dot" PartOfGroup="mitoses" Color="#64FE2E">
\t\t\t<Coordinates><Coordinate Order="0" X="500.5" Y="600.5" /></Coordinates>
\t\t</Annotation>
\t\t<Annotation Name="Annotation 3" Type="PointSet" PartOfGroup="mitoses" Color="#64FE2E">
\t\t\t<Coordinates>
\t\t\t\t<Coordinate Order="0" X="1" Y="2" /><Coordinate Order="1" X="3" Y="4" />
\t\t\t</Coordinates>
\t\t</Annotation>
\t\t<Annotation Name="Annotation 4" Type="Spline" PartOfGroup="metastases" Color="#F4FA58">
\t\t\t<Coordinates>
\t\t\t\t<Coordinate Order="0" X="0" Y="0" /><Coordinate Order="1" X="10" Y="0" />
\t\t\t\t<Coordinate Order="2" X="10" Y="10" /><Coordinate Order="3" X="0" Y="10" />
\t\t\t</Coordinates>
\t\t</Annotation>
\t\t<Annotation Name="Annotation 5" Type="Measurement" PartOfGroup="None" Color="#000000">
\t\t\t<Coordinates>
\t\t\t\t<Coordinate Order="0" X="0" Y="0" /><Coordinate Order="1" X="30" Y="40" />
\t\t\t</Coordinates>
\t\t</Annotation>
\t</Annotations>
\t<AnnotationGroups>
\t\t<Group Name="metastases" PartOfGroup="None" Color="#ff0000"><Attributes /></Group>
\t\t<Group Name="mitoses" PartOfGroup="None" Color="#64FE2E"><Attributes /></Group>
\t</AnnotationGroups>
</ASAP_Annotations>
"""


def test_reads_an_asap_file_as_asap_writes_it(tmp_path):
    path = tmp_path / "camelyon.xml"
    path.write_text(ASAP_FILE)
    features = read_annotations(path)
    assert [f.name for f in features] == [f"Annotation {i}" for i in range(6)]
    triangle, rect, dot, points, spline, ruler = features
    assert triangle.class_name == "metastases" and triangle.color == (255, 0, 0)
    assert list(triangle.geometry.exterior.coords)[0] == (12000.5, 52000.25)
    assert triangle.geometry.area == pytest.approx(
        Polygon([(12000.5, 52000.25), (13000, 52100), (12600, 53100)]).area
    )
    assert rect.class_name is None and rect.color is None and rect.geometry.area == 200 * 60
    assert dot.geometry.equals(Point(500.5, 600.5)) and dot.color == (100, 254, 46)
    assert isinstance(points.geometry, MultiPoint) and len(points.geometry.geoms) == 2
    assert spline.geometry.area == 100
    assert ruler.geometry.length == 50


IMAGESCOPE_FILE = """<?xml version="1.0" encoding="UTF-8"?>
<Annotations MicronsPerPixel="0.499000">
<Annotation Id="1" Name="Tumor" ReadOnly="0" NameReadOnly="0" LineColorReadOnly="0" Incremental="0"
 Type="4" LineColor="255" Visible="1" Selected="1" MarkupImagePath="" MacroName="">
\t<Attributes><Attribute Name="Description" Id="0" Value=""/></Attributes>
\t<Regions>
\t\t<RegionAttributeHeaders>
\t\t\t<AttributeHeader Id="9999" Name="Region" ColumnWidth="-1"/>
\t\t\t<AttributeHeader Id="9997" Name="Length" ColumnWidth="-1"/>
\t\t</RegionAttributeHeaders>
\t\t<Region Id="1" Type="0" Zoom="0.5" Selected="0" ImageLocation="" ImageFocus="-1"
 Length="4000" Area="1000000" LengthMicrons="1996" AreaMicrons="249001" Text="nest 1"
 NegativeROA="0" InputRegionId="0" Analyze="1" DisplayId="1">
\t\t\t<Attributes/>
\t\t\t<Vertices>
\t\t\t\t<Vertex X="1000" Y="1000" Z="0"/><Vertex X="2000" Y="1000" Z="0"/>
\t\t\t\t<Vertex X="2000" Y="2000" Z="0"/><Vertex X="1000" Y="2000" Z="0"/>
\t\t\t</Vertices>
\t\t</Region>
\t\t<Region Id="2" Type="2" Text="" NegativeROA="1" DisplayId="2">
\t\t\t<Attributes/>
\t\t\t<Vertices><Vertex X="1200" Y="1200" Z="0"/><Vertex X="1400" Y="1300" Z="0"/></Vertices>
\t\t</Region>
\t\t<Region Id="3" Type="0" Text="" NegativeROA="1" DisplayId="3">
\t\t\t<Attributes/>
\t\t\t<Vertices>
\t\t\t\t<Vertex X="5000" Y="5000" Z="0"/><Vertex X="5100" Y="5000" Z="0"/>
\t\t\t\t<Vertex X="5100" Y="5100" Z="0"/>
\t\t\t</Vertices>
\t\t</Region>
\t</Regions>
\t<Plots/>
</Annotation>
<Annotation Id="2" Name="" LineColor="16711680" Visible="1">
\t<Regions>
\t\t<Region Id="1" Type="1" Text="box" NegativeROA="0">
\t\t\t<Vertices>
\t\t\t\t<Vertex X="0" Y="0"/><Vertex X="50" Y="0"/><Vertex X="50" Y="20"/><Vertex X="0" Y="20"/>
\t\t\t</Vertices>
\t\t</Region>
\t\t<Region Id="2" Type="4" Text="ruler" NegativeROA="0">
\t\t\t<Vertices><Vertex X="0" Y="0"/><Vertex X="300" Y="400"/></Vertices>
\t\t</Region>
\t\t<Region Id="3" Type="3" Text="arrow" NegativeROA="0">
\t\t\t<Vertices><Vertex X="10" Y="10"/><Vertex X="20" Y="10"/></Vertices>
\t\t</Region>
\t</Regions>
</Annotation>
</Annotations>
"""


def test_reads_an_imagescope_file_as_imagescope_writes_it(tmp_path):
    path = tmp_path / "aperio.xml"
    path.write_text(IMAGESCOPE_FILE)
    features = read_annotations(path)
    nest, rect, ruler, arrow, stray = features  # stray exclusions come last
    assert (nest.class_name, nest.color, nest.name) == ("Tumor", (255, 0, 0), "nest 1")
    assert len(nest.geometry.interiors) == 1  # the negative ellipse is a hole
    hole = Polygon(nest.geometry.interiors[0])
    assert hole.bounds == pytest.approx((1200, 1200, 1400, 1300))
    assert stray.class_name == "Ignore*"  # a negative region over no polygon: excluded area
    assert rect.class_name is None and rect.geometry.area == 1000 and rect.name == "box"
    assert ruler.geometry.length == 500 and arrow.geometry.length == 10
    assert read_imagescope(path)[0].geometry.equals(nest.geometry)


def test_imagescope_colours_are_bgr_integers(tmp_path):
    feature = Feature(box(0, 0, 10, 10), class_name="Stroma", color=(150, 200, 50))
    write_annotations(tmp_path / "s.xml", [feature], "imagescope")
    assert f'LineColor="{150 + 200 * 256 + 50 * 65536}"' in (tmp_path / "s.xml").read_text()
    assert read_annotations(tmp_path / "s.xml")[0].color == (150, 200, 50)


BAD_FILES = {
    "truncated.xml": ("<ASAP_Annotations><Annotations><Annotation", "not a readable"),
    "laughs.xml": (
        '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">]>'
        "<ASAP_Annotations>&lol;</ASAP_Annotations>",
        "DOCTYPE",
    ),
    "other.xml": ("<svg><g/></svg>", "root element <svg>"),
    "empty.geojson": ("", "is empty"),
    "text.json": ("hello", "neither GeoJSON"),
    "notes.txt": ("{}", "suffix '.txt'"),
    "broken.geojson": ('{"type": "FeatureCollection", "features": [', "not JSON"),
    "twopoints.xml": (
        '<ASAP_Annotations><Annotations><Annotation Type="Polygon"><Coordinates>'
        '<Coordinate Order="0" X="0" Y="0"/><Coordinate Order="1" X="1" Y="1"/>'
        "</Coordinates></Annotation></Annotations></ASAP_Annotations>",
        "at least 3",
    ),
    "nan.xml": (
        '<Annotations><Annotation Name="T"><Regions><Region Type="0"><Vertices>'
        '<Vertex X="nan" Y="0"/></Vertices></Region></Regions></Annotation></Annotations>',
        "finite",
    ),
    "circle.xml": (
        '<ASAP_Annotations><Annotations><Annotation Name="c" Type="Circle"><Coordinates>'
        '<Coordinate Order="0" X="0" Y="0"/></Coordinates></Annotation></Annotations>'
        "</ASAP_Annotations>",
        "unknown type 'Circle'",
    ),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_bad_files_are_one_sentence_naming_the_file(tmp_path, name):
    text, fragment = BAD_FILES[name]
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(AnnotationFormatError) as caught:
        read_annotations(path)
    message = str(caught.value)
    assert name in message and fragment in message and "\n" not in message


def test_missing_file_is_named(tmp_path):
    with pytest.raises(AnnotationFormatError, match="no such annotation file"):
        read_annotations(tmp_path / "gone.geojson")


@pytest.mark.parametrize(
    ("name", "fragment"), [("out.xml", "--format asap"), ("out.txt", "suffix '.txt'")]
)
def test_output_format_must_be_known(tmp_path, name, fragment):
    with pytest.raises(AnnotationFormatError, match=fragment):
        write_annotations(tmp_path / name, sample_features())
    assert not (tmp_path / name).exists()


@pytest.mark.parametrize("fmt", ["asap", "imagescope"])
def test_full_disk_leaves_nothing(tiny_disk, fmt):  # noqa: F811
    disk = tiny_disk(64)
    fill_disk(disk, leave_bytes=512)
    with pytest.raises(OutputError, match="disk is full"):
        write_annotations(disk / "big.xml", sample_features() * 20, fmt)
    assert not (disk / "big.xml").exists() and not leftovers(disk)


@pytest.mark.parametrize(
    ("name", "fragment"), [("d.geojson", "it is a folder"), ("d", "no suffix")]
)
def test_a_folder_is_not_an_annotation_file(tmp_path, name, fragment):
    (tmp_path / name).mkdir()
    with pytest.raises(AnnotationFormatError, match=fragment):
        read_annotations(tmp_path / name)
