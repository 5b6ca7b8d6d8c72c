"""Drawing and editing annotations in a pane with mouse and key events (issue 17)."""

import math

import numpy as np
import pytest

pytest.importorskip("PySide6")

from PIL import Image, ImageDraw  # noqa: E402
from PySide6.QtCore import QPoint, QSettings, Qt  # noqa: E402

from her2viewer.annotations.store import store_path  # noqa: E402
from her2viewer.geometry.geojson import read_features  # noqa: E402
from her2viewer.gui.app import settle  # noqa: E402
from her2viewer.gui.mainwindow import MainWindow  # noqa: E402
from her2viewer.gui.tiles import TileCache, TileLoader  # noqa: E402
from her2viewer.slide.synthetic import CaseSpec, write_case  # noqa: E402
from her2viewer.viewport import ViewState  # noqa: E402

LEFT = Qt.MouseButton.LeftButton
ALT = Qt.KeyboardModifier.AltModifier
SHIFT = Qt.KeyboardModifier.ShiftModifier
CTRL = Qt.KeyboardModifier.ControlModifier
BLOB = (1000, 750, 300)  # centre x, y and radius (level-0 px) of the wand slide's disc


@pytest.fixture(scope="module")
def he_slide(tmp_path_factory):
    """A small synthetic H&E slide."""
    out = tmp_path_factory.mktemp("annotation_case")
    write_case(CaseSpec("a", 2, 3000, 2400, seed=5, index=0), out)
    return out / "a" / "he.svs"


@pytest.fixture(scope="module")
def blob_slide(tmp_path_factory):
    """A white image with one uniform purple disc (:data:`BLOB`)."""
    path = tmp_path_factory.mktemp("blob") / "blob.png"
    image = Image.new("RGB", (2000, 1500), (250, 250, 250))
    cx, cy, r = BLOB
    ImageDraw.Draw(image).ellipse((cx - r, cy - r, cx + r, cy + r), fill=(120, 60, 160))
    image.save(path)
    return path


@pytest.fixture()
def window(qtbot, tmp_path, monkeypatch):
    monkeypatch.setenv("HER2VIEWER_DATA", str(tmp_path / "data"))  # a fresh store per test
    loader = TileLoader(TileCache(64), workers=2)
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    win = MainWindow(loader, settings)
    qtbot.addWidget(win)
    win.resize(1100, 700)
    win.show()
    qtbot.waitExposed(win)
    yield win
    win.annotations.close_all()
    loader.shutdown()


def opened(window, path):
    """The controller of pane 0 once ``path`` is open and drawn there."""
    assert window.open_in_pane(path).wait()
    assert settle(window, 30)
    controller = window.annotations.active
    controller.view.setFocus()
    return controller


def at(view, x, y) -> QPoint:
    """The screen point showing level-0 ``(x, y)``."""
    sx, sy = view.level0_to_screen(x, y)
    return QPoint(round(sx), round(sy))


def drag(qtbot, view, points, modifier=Qt.KeyboardModifier.NoModifier):
    """Press at the first level-0 point, move through the others, release at the last."""
    screen = [at(view, *p) for p in points]
    qtbot.mousePress(view, LEFT, modifier, screen[0])
    for point in screen[1:]:
        qtbot.mouseMove(view, point)
    qtbot.mouseRelease(view, LEFT, modifier, screen[-1])


def click(qtbot, view, point, modifier=Qt.KeyboardModifier.NoModifier):
    qtbot.mouseClick(view, LEFT, modifier, at(view, *point))


def only(controller):
    """The one annotation of the pane."""
    anns = list(controller.document)
    assert len(anns) == 1
    return anns[0]


def assert_bounds(view, geometry, expected):
    """Bounds equal ``expected`` within one screen pixel (in level-0 px)."""
    assert geometry.bounds == pytest.approx(expected, abs=view.state.downsample * 1.01)


def test_each_shape_is_drawn_in_level0_with_the_current_class(window, he_slide, qtbot):
    controller = opened(window, he_slide)
    view = controller.view
    controller.set_class("Tumor")
    shapes = {
        "rectangle": [(500, 400), (900, 700), (1200, 1000)],
        "ellipse": [(1400, 400), (1800, 800)],
        "line": [(300, 1500), (1300, 1900)],
    }
    for name, points in shapes.items():
        window.annotations.set_tool(name)
        drag(qtbot, view, points)
    window.annotations.set_tool("polygon")
    for point in [(2000, 300), (2600, 400), (2400, 900)]:
        click(qtbot, view, point)
    qtbot.mouseDClick(view, LEFT, pos=at(view, 2100, 800))
    window.annotations.set_tool("polyline")
    for point in [(1500, 1500), (2000, 1800), (2500, 1500)]:
        click(qtbot, view, point)
    qtbot.keyClick(view, Qt.Key.Key_Return)
    kinds = {ann.kind: ann for ann in controller.document}
    assert set(kinds) == {"rectangle", "ellipse", "line", "polygon", "polyline"}
    assert all(ann.class_name == "Tumor" for ann in kinds.values())
    assert_bounds(view, kinds["rectangle"].geometry, (500, 400, 1200, 1000))
    assert_bounds(view, kinds["ellipse"].geometry, (1400, 400, 1800, 800))
    assert_bounds(view, kinds["line"].geometry, (300, 1500, 1300, 1900))
    assert len(kinds["polygon"].geometry.exterior.coords) == 5  # four vertices, closed
    assert_bounds(view, kinds["polygon"].geometry, (2000, 300, 2600, 900))
    assert_bounds(view, kinds["polyline"].geometry, (1500, 1500, 2500, 1800))
    assert controller.selected_ids == [kinds["polyline"].id]  # the new shape is selected


def test_polygon_closes_on_its_first_vertex_and_esc_drops_a_drawing(window, he_slide, qtbot):
    controller = opened(window, he_slide)
    view = controller.view
    window.annotations.set_tool("polygon")
    for point in [(800, 800), (1400, 800), (1400, 1300)]:
        click(qtbot, view, point)
    first = at(view, 800, 800)
    qtbot.mouseClick(view, LEFT, pos=first + QPoint(5, -4))  # within the 8 px snap
    assert_bounds(view, only(controller).geometry, (800, 800, 1400, 1300))
    for point in [(200, 200), (600, 200)]:
        click(qtbot, view, point)
    qtbot.keyClick(view, Qt.Key.Key_Escape)
    qtbot.keyClick(view, Qt.Key.Key_Return)
    assert len(controller.document) == 1


def test_drawing_follows_a_rotated_view(window, he_slide, qtbot):
    controller = opened(window, he_slide)
    view = controller.view
    state = view.state
    view.set_state(ViewState(state.cx, state.cy, state.downsample, math.pi / 6))
    window.annotations.set_tool("rectangle")
    drag(qtbot, view, [(1000, 900), (1600, 1300)])
    assert_bounds(view, only(controller).geometry, (1000, 900, 1600, 1300))


def test_move_vertex_edit_undo_redo(window, he_slide, qtbot):
    controller = opened(window, he_slide)
    view = controller.view
    window.annotations.set_tool("rectangle")
    drag(qtbot, view, [(1000, 800), (1600, 1200)])
    drawn = only(controller).geometry
    window.annotations.set_tool("move")
    drag(qtbot, view, [(1300, 1000), (1400, 1100), (1500, 1200)])
    (x0, y0), (x1, y1) = (
        view.screen_to_level0(*at(view, *p).toTuple()) for p in [(1300, 1000), (1500, 1200)]
    )
    moved = only(controller).geometry
    assert np.allclose(moved.bounds, np.add(drawn.bounds, [x1 - x0, y1 - y0] * 2), atol=1e-6)
    corner = moved.bounds[2:]
    drag(qtbot, view, [corner, (2000, 1700)])  # the corner's handle
    edited = only(controller)
    assert edited.kind == "polygon"
    assert_bounds(view, edited.geometry, (*moved.bounds[:2], 2000, 1700))
    assert edited.geometry.area < 800 * 700  # one corner moved, not the whole shape
    undo, redo = window.annotations.undo_action, window.annotations.redo_action
    qtbot.waitUntil(undo.isEnabled)
    assert undo.text() == "&Undo " + controller.stack.undo_description
    undo.trigger()
    assert only(controller).geometry.equals(moved)
    undo.trigger()
    assert only(controller).geometry.equals(drawn)
    redo.trigger()
    redo.trigger()
    assert only(controller).geometry.equals(edited.geometry)
    assert undo.isEnabled() and not redo.isEnabled()


def test_class_by_number_key_and_menu(window, he_slide, qtbot):
    controller = opened(window, he_slide)
    view = controller.view
    window.annotations.set_tool("ellipse")
    drag(qtbot, view, [(1000, 800), (1600, 1200)])
    qtbot.keyClick(view, Qt.Key.Key_2)
    assert only(controller).class_name == controller.document.classes[1].name
    menu = window.annotations.class_menu
    necrosis = next(a for a in menu.actions() if a.text().startswith("Necrosis"))
    necrosis.trigger()
    assert only(controller).class_name == "Necrosis"
    qtbot.keyClick(view, Qt.Key.Key_Escape)  # nothing drawn: Esc clears the selection
    assert controller.selected_ids == []
    qtbot.keyClick(view, Qt.Key.Key_1)  # no selection: the class of new shapes
    assert window.annotations.class_box.currentText() == controller.document.classes[0].name
    assert only(controller).class_name == "Necrosis"


def test_context_menu_selects_and_classes(window, he_slide, qtbot):
    from PySide6.QtWidgets import QMenu

    controller = opened(window, he_slide)
    view = controller.view
    window.annotations.set_tool("rectangle")
    drag(qtbot, view, [(1000, 800), (1600, 1200)])
    controller.select([])
    menu = QMenu()
    pos = at(view, 1300, 1000)
    controller.fill_menu(menu, pos.x(), pos.y())
    assert controller.selected_ids == [only(controller).id]
    classes = next(a.menu() for a in menu.actions() if a.text() == "Set class")
    next(a for a in classes.actions() if a.text() == "Stroma").trigger()
    assert only(controller).class_name == "Stroma"


def test_select_delete_merge_subtract_duplicate(window, he_slide, qtbot):
    controller = opened(window, he_slide)
    view = controller.view
    window.annotations.set_tool("rectangle")
    drag(qtbot, view, [(500, 500), (1500, 1500)])
    drag(qtbot, view, [(1000, 1000), (2000, 2000)])
    big, other = list(controller.document)
    window.annotations.set_tool("move")
    click(qtbot, view, (700, 700))
    click(qtbot, view, (1800, 1800), SHIFT)
    assert controller.selected_ids == [big.id, other.id]
    controller.subtract_selected()
    cut = controller.document.get(big.id)
    assert cut.geometry.equals(big.geometry.difference(other.geometry))  # a corner cut off
    drag(qtbot, view, [(300, 300), (2200, 2200)], CTRL)  # rubber band takes both
    assert set(controller.selected_ids) == {big.id, other.id}
    qtbot.keyClick(view, Qt.Key.Key_M, Qt.KeyboardModifier.ControlModifier | SHIFT)
    merged = only(controller)
    assert merged.geometry.equals(cut.geometry.union(other.geometry))
    assert controller.selected_ids == [merged.id]
    qtbot.keyClick(view, Qt.Key.Key_D, CTRL)
    copy = next(a for a in controller.document if a.id != merged.id)
    assert copy.geometry.area == pytest.approx(merged.geometry.area)
    assert controller.selected_ids == [copy.id]
    qtbot.keyClick(view, Qt.Key.Key_Delete)
    assert list(controller.document) == [merged]


def test_locked_annotation_refuses_move_and_edits(window, he_slide, qtbot):
    controller = opened(window, he_slide)
    view = controller.view
    messages = []
    controller.message.connect(messages.append)
    window.annotations.set_tool("rectangle")
    drag(qtbot, view, [(1000, 800), (1600, 1200)])
    qtbot.keyClick(view, Qt.Key.Key_K, CTRL)
    assert only(controller).locked
    window.annotations.set_tool("move")
    drag(qtbot, view, [(1300, 1000), (1700, 1400)])
    assert_bounds(view, only(controller).geometry, (1000, 800, 1600, 1200))
    window.annotations.set_tool("brush")
    drag(qtbot, view, [(1600, 1000), (1900, 1000)])
    assert_bounds(view, only(controller).geometry, (1000, 800, 1600, 1200))
    assert len(messages) == 2 and all("lock" in m for m in messages)


def test_brush_adds_and_alt_subtracts(window, he_slide, qtbot):
    controller = opened(window, he_slide)
    view = controller.view
    window.annotations.set_tool("brush")
    window.annotations.brush_box.setValue(40)  # um: 80 px of this 0.5 um/px slide
    drag(qtbot, view, [(800, 1000), (1200, 1000), (1600, 1000)])  # nothing selected: new
    stroke = only(controller)
    radius = 40 / 2 / 0.5
    assert stroke.geometry.area == pytest.approx(800 * 2 * radius + math.pi * radius**2, rel=0.05)
    drag(qtbot, view, [(1200, 1000), (1200, 1400)])  # merged into the selected one
    grown = only(controller)
    assert grown.id == stroke.id and grown.geometry.area > stroke.geometry.area * 1.2
    drag(qtbot, view, [(900, 800), (900, 1200)], ALT)
    cut = only(controller)
    assert cut.geometry.area < grown.geometry.area * 0.95


def test_brush_size_is_in_um_and_kept_across_zoom(window, he_slide, blob_slide, qtbot):
    controller = opened(window, he_slide)
    view = controller.view
    box = window.annotations.brush_box
    window.annotations.set_tool("brush")
    box.setValue(60)
    assert box.suffix() == " µm"
    areas = []
    for magnification, y in ((10.0, 900), (2.5, 1300)):  # 4x the downsample
        view.set_magnification(magnification)
        view.center_on(1200, 1100)
        controller.select([])
        drag(qtbot, view, [(900, y), (1500, y)])
        areas.append(controller.document.get(controller.selected_ids[0]).geometry.area)
    radius = 60 / 2 / 0.5  # level-0 px of this 0.5 um/px slide
    assert areas == pytest.approx([600 * 2 * radius + math.pi * radius**2] * 2, rel=0.05)
    other = opened(window, blob_slide)  # no pixel size: the size is in the slide's pixels
    assert box.suffix() == " px" and other.tools["brush"].radius == box.value() / 2


def test_points_go_to_one_set_per_class(window, he_slide, qtbot):
    controller = opened(window, he_slide)
    view = controller.view
    window.annotations.set_tool("points")
    controller.set_class("Positive")
    for point in [(500, 500), (700, 500), (900, 500)]:
        click(qtbot, view, point)
    controller.select([])
    controller.set_class("Negative")
    for point in [(500, 900), (700, 900)]:
        click(qtbot, view, point)
    counts = {a.class_name: len(a.geometry.geoms) for a in controller.document}
    assert counts == {"Positive": 3, "Negative": 2}
    click(qtbot, view, (700, 900), ALT)
    counts = {a.class_name: len(a.geometry.geoms) for a in controller.document}
    assert counts == {"Positive": 3, "Negative": 1}


def test_wand_outlines_a_uniform_blob(window, blob_slide, qtbot):
    controller = opened(window, blob_slide)
    view = controller.view
    window.annotations.set_tool("wand")
    cx, cy, r = BLOB
    click(qtbot, view, (cx + 40, cy - 30))
    blob = only(controller)
    assert blob.geometry.geom_type == "Polygon"
    assert blob.geometry.area == pytest.approx(math.pi * r**2, rel=0.05)
    assert blob.geometry.centroid.distance(blob.geometry.centroid.__class__(cx, cy)) < 10


def test_the_store_file_gets_the_annotation(window, he_slide, qtbot):
    controller = opened(window, he_slide)
    view = controller.view
    window.annotations.set_tool("ellipse")
    controller.set_class("Tumor")
    drag(qtbot, view, [(1000, 800), (1600, 1200)])
    path = store_path(view.slide.info.fingerprint)

    def saved():
        return path.exists() and [f.class_name for f in read_features(path)] == ["Tumor"]

    qtbot.waitUntil(saved, timeout=3000)  # saved within a second, without a flush
    feature = read_features(path)[0]
    assert np.allclose(feature.geometry.bounds, only(controller).geometry.bounds, atol=0.01)
