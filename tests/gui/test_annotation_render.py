"""The annotation painter draws a document over a slide view (issue 17 rendering)."""

import time

import numpy as np
import pytest
import shapely

pytest.importorskip("PySide6")

from PIL import Image  # noqa: E402
from PySide6.QtGui import QImage  # noqa: E402

from her2viewer.annotations.commands import Add, CommandStack, SetClass  # noqa: E402
from her2viewer.annotations.model import Annotation, AnnotationDocument  # noqa: E402
from her2viewer.geometry.shapes import ellipse  # noqa: E402
from her2viewer.gui.annotations.layer import (  # noqa: E402
    MANY_POINTS,
    SELECTED,
    AnnotationPainter,
    bucket_of,
)
from her2viewer.gui.slideview import SlideView  # noqa: E402
from her2viewer.gui.tiles import TileCache, TileLoader  # noqa: E402
from her2viewer.slide import open_slide  # noqa: E402
from her2viewer.viewport import ViewState  # noqa: E402

TUMOR = (200, 0, 0)  # QuPath's Tumor colour
STROMA = (150, 200, 150)


@pytest.fixture(scope="module")
def white_slide(tmp_path_factory):
    """A plain white 3000 x 2000 image: any coloured pixel is an annotation's."""
    path = tmp_path_factory.mktemp("render") / "white.png"
    Image.new("RGB", (3000, 2000), (255, 255, 255)).save(path)
    return path


@pytest.fixture()
def view(qtbot, white_slide):
    loader = TileLoader(TileCache(64), workers=1)
    pane = SlideView(loader)
    qtbot.addWidget(pane)
    pane.resize(600, 400)
    pane.show()
    pane.set_slide(open_slide(white_slide))
    pane.show_hud = False
    qtbot.waitUntil(pane.fully_loaded, timeout=10000)
    yield pane
    loader.shutdown()


def painted(view, painter: AnnotationPainter) -> np.ndarray:
    """Paint until every annotation tile is there; the view's pixels (H x W x 3)."""
    view.vector_painters = [painter]
    deadline = time.monotonic() + 10
    view.repaint()
    while painter.stats.pending and time.monotonic() < deadline:
        view.repaint()
    image = view.grab().toImage().convertToFormat(QImage.Format.Format_RGB888)
    array = np.frombuffer(image.constBits(), np.uint8)
    return array.reshape(image.height(), image.bytesPerLine())[:, : image.width() * 3].reshape(
        image.height(), image.width(), 3
    )


def screen(view, x, y) -> tuple[int, int]:
    """The (row, column) pixel showing level-0 ``(x, y)``."""
    sx, sy = view.level0_to_screen(x, y)
    return round(sy), round(sx)


def near(pixels, view, x, y, color, radius=2, tolerance=90) -> bool:
    """Whether a pixel within ``radius`` of level-0 ``(x, y)`` has about ``color`` (an
    antialiased 1.5 px outline covers a pixel by three quarters at best)."""
    row, col = screen(view, x, y)
    patch = pixels[row - radius : row + radius + 1, col - radius : col + radius + 1].astype(int)
    return bool((np.abs(patch - color).max(axis=-1) <= tolerance).any())


def test_outline_in_class_colour_with_light_fill(view):
    rect = Annotation(shapely.box(600, 500, 1800, 1400), class_name="Tumor")
    view.set_state(ViewState(1500, 1000, 4.0))
    pixels = painted(view, AnnotationPainter(AnnotationDocument([rect])))
    assert near(pixels, view, 600, 950, TUMOR)  # the left edge
    inside = pixels[screen(view, 1200, 950)].astype(int)
    assert inside[0] > 240 and 150 < inside[1] < 250  # white tinted with the class colour
    assert tuple(pixels[screen(view, 2400, 950)]) == (255, 255, 255)


def test_only_objects_in_view_are_drawn(view):
    near_ids = {"a", "b"}
    anns = [
        Annotation(shapely.box(100, 100, 200, 160), id="a", class_name="Tumor"),
        Annotation(shapely.box(250, 120, 320, 200), id="b", class_name="Stroma"),
    ]
    rng = np.random.default_rng(0)
    for i, (x, y) in enumerate(rng.uniform(1500, 2900, (200, 2))):
        anns.append(Annotation(shapely.box(x, y - 1000, x + 50, y - 950), id=f"far{i}"))
    painter = AnnotationPainter(AnnotationDocument(anns))
    drawn = set()
    outline = painter.outline
    painter.outline = lambda ann, bucket: drawn.add(ann.id) or outline(ann, bucket)
    view.set_state(ViewState(300, 200, 1.0))  # 600 x 400 level-0 px at the top left
    painted(view, painter)
    assert drawn == near_ids


def test_outlines_are_simplified_at_low_zoom():
    circle = Annotation(ellipse(1000, 1000, 600, 600, segments=720))
    painter = AnnotationPainter(AnnotationDocument([circle]))
    fine = painter.outline(circle, bucket_of(1.0)).elementCount()
    coarse = painter.outline(circle, bucket_of(64.0)).elementCount()
    assert fine > 100 and coarse < fine / 4
    assert painter.outline(circle, bucket_of(64.0)) is painter.outline(circle, bucket_of(64.0))


def test_objects_under_two_screen_pixels_are_dots(view):
    speck = Annotation(shapely.box(1500, 1000, 1508, 1006), class_name="Tumor")
    painter = AnnotationPainter(AnnotationDocument([speck]))
    drawn = []
    outline = painter.outline
    painter.outline = lambda ann, bucket: drawn.append(ann.id) or outline(ann, bucket)
    view.set_state(ViewState(1500, 1000, 8.0))
    pixels = painted(view, painter)
    assert drawn == [] and painter.stats.drawn == 0  # cached from the frames before
    assert near(pixels, view, 1504, 1003, TUMOR, tolerance=80)


def test_an_edit_redraws_only_the_tiles_it_touches(view):
    left = Annotation(shapely.box(200, 300, 500, 600), class_name="Tumor")
    right = Annotation(shapely.box(2300, 1300, 2700, 1700), class_name="Tumor")
    document = AnnotationDocument([left, right])
    painter = AnnotationPainter(document)
    view.fit()
    pixels = painted(view, painter)
    assert near(pixels, view, 2300, 1500, TUMOR)
    before = dict(painter._tiles)
    CommandStack(document).push(SetClass([right.id], "Stroma"))
    kept = [k for k, image in before.items() if painter._tiles.get(k) is image]
    dropped = [k for k in before if k not in painter._tiles]
    assert kept and dropped
    assert any(image is not None for k, image in before.items() if k in kept)  # left's tiles
    pixels = painted(view, painter)
    assert near(pixels, view, 2300, 1500, STROMA, tolerance=60)
    assert not near(pixels, view, 2300, 1500, TUMOR)
    assert near(pixels, view, 200, 450, TUMOR)


def test_add_and_undo_show_at_once(view, qtbot):
    document = AnnotationDocument()
    painter = AnnotationPainter(document)
    stack = CommandStack(document)
    view.set_state(ViewState(1500, 1000, 4.0))
    painted(view, painter)
    stack.push(Add([Annotation(shapely.box(1000, 800, 1400, 1200), class_name="Tumor")]))
    assert near(painted(view, painter), view, 1000, 1000, TUMOR)
    stack.undo()
    assert not near(painted(view, painter), view, 1000, 1000, TUMOR)


def test_selection_is_highlighted_with_handles(view):
    rect = Annotation(shapely.box(1000, 800, 1400, 1200), class_name="Tumor")
    selected = []
    painter = AnnotationPainter(AnnotationDocument([rect]), lambda: selected)
    view.set_state(ViewState(1500, 1000, 4.0))
    assert not near(painted(view, painter), view, 1000, 1000, SELECTED.getRgb()[:3])
    selected.append(rect.id)
    pixels = painted(view, painter)
    assert near(pixels, view, 1000, 1000, SELECTED.getRgb()[:3])
    row, col = screen(view, 1400, 800)  # a corner handle: a 6 px square
    assert (
        np.abs(pixels[row - 2 : row + 3, col - 2 : col + 3].astype(int) - (255, 230, 0)) < 30
    ).all()


def test_hit_tests_find_points_lines_and_areas():
    region = Annotation(shapely.box(0, 0, 1000, 1000), class_name="Tumor")
    line = Annotation(shapely.LineString([(100, 900), (900, 900)]), kind="line")
    coords = np.c_[np.linspace(50, 950, MANY_POINTS + 10), np.full(MANY_POINTS + 10, 500.0)]
    points = Annotation(shapely.MultiPoint(coords), kind="points", class_name="Positive")
    painter = AnnotationPainter(AnnotationDocument([region, line, points]))
    assert painter.ids_at(coords[3, 0], 501, tolerance=3) == [points.id, region.id]
    assert painter.ids_at(500, 902, tolerance=3) == [line.id, region.id]
    assert painter.ids_at(500, 200, tolerance=3) == [region.id]
    assert painter.ids_at(5000, 200) == []
    assert painter.ids_in(0, 450, 60, 550) == [region.id, points.id]
    assert painter.ids_in(0, 600, 60, 700) == [region.id]


def test_names_only_where_the_object_is_wide_on_screen(view):
    rect = Annotation(shapely.box(600, 500, 1800, 1400), class_name="Tumor", name="Invasive")
    painter = AnnotationPainter(AnnotationDocument([rect]))
    for downsample, labelled in ((4.0, True), (24.0, False)):  # 300 and 50 px wide on screen
        view.set_state(ViewState(1500, 1000, downsample))
        row, col = screen(view, 600, 500)
        pixel = painted(view, painter)[row + 5, col + 6].astype(int)  # in the label's box
        assert (pixel.sum() < 400) == labelled  # the dark label, else the light fill


def test_a_rotated_view_draws_where_its_matrix_maps(view):
    rect = Annotation(shapely.box(600, 500, 1800, 1400), class_name="Tumor")
    view.set_state(ViewState(1200, 950, 4.0, angle=0.6))
    pixels = painted(view, AnnotationPainter(AnnotationDocument([rect])))
    for x, y in ((600, 950), (1200, 500), (1800, 950), (1200, 1400)):  # the four sides
        assert near(pixels, view, x, y, TUMOR)
    assert not near(pixels, view, 1200, 950, TUMOR)  # inside: the light fill only


def test_a_selected_point_set_has_a_handle_on_each_point_in_view(view):
    coords = np.c_[np.linspace(0, 2990, 5000), np.full(5000, 1000.0)]  # more than MAX_HANDLES
    points = Annotation(shapely.MultiPoint(coords), kind="points", class_name="Negative")
    painter = AnnotationPainter(AnnotationDocument([points]), lambda: [points.id])
    view.set_state(ViewState(1500, 1000, 1.0))  # 600 px of the line: about 1000 points
    pixels = painted(view, painter)
    assert near(pixels, view, 1500, 1000, SELECTED.getRgb()[:3], tolerance=30)


def test_a_detached_painter_lets_go_of_the_document(view):
    document = AnnotationDocument([Annotation(shapely.box(600, 500, 1800, 1400))])
    painter = AnnotationPainter(document)
    view.fit()
    painted(view, painter)
    assert painter._tiles
    painter.detach()
    assert not painter._tiles
    snapshot = painter._ensure_index()
    CommandStack(document).push(Add([Annotation(shapely.box(0, 0, 10, 10))]))
    assert painter._index is snapshot  # no longer told of changes


def test_tiles_around_the_view_are_ready_before_a_pan(view, qtbot):
    rng = np.random.default_rng(1)
    boxes = [shapely.box(x, y, x + 40, y + 40) for x, y in rng.uniform(0, 2900, (300, 2))]
    painter = AnnotationPainter(AnnotationDocument([Annotation(b) for b in boxes]))
    view.set_state(ViewState(1500, 1000, 2.0))
    painted(view, painter)
    qtbot.waitUntil(lambda: not painter.prefetching, timeout=20000)  # rendered between frames
    view.pan_by(-200, -150)  # a tile (256 level-0 px) further right and down
    view.repaint()
    assert painter.stats.rendered == 0 and painter.stats.tiles > 0


def test_sparse_tiles_blit_only_their_drawn_part(view):
    speck = Annotation(shapely.box(1495, 995, 1505, 1005), class_name="Tumor")
    painter = AnnotationPainter(AnnotationDocument([speck]))
    view.set_state(ViewState(1500, 1000, 1.0))
    pixels = painted(view, painter)
    parts = [tile[1] for tile in painter._tiles.values() if tile is not None]
    assert parts and all(p.width() * p.height() <= 24 * 24 for p in parts)
    assert near(pixels, view, 1495, 1000, TUMOR)
