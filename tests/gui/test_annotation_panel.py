"""The Annotations dock: tree, class panel and measurement table (issue 17 panels)."""

import csv

import pytest
import shapely

pytest.importorskip("PySide6")

from PIL import Image  # noqa: E402
from PySide6.QtCore import QObject, QSettings, Qt, Signal  # noqa: E402
from PySide6.QtGui import QColor  # noqa: E402
from PySide6.QtWidgets import QColorDialog, QDockWidget, QInputDialog  # noqa: E402

from her2viewer.annotations.commands import Add, CommandStack  # noqa: E402
from her2viewer.annotations.model import Annotation, AnnotationDocument  # noqa: E402
from her2viewer.gui.annotations.panel import AnnotationPanel  # noqa: E402
from her2viewer.gui.app import settle  # noqa: E402
from her2viewer.gui.mainwindow import MainWindow  # noqa: E402
from her2viewer.gui.tiles import TileCache, TileLoader  # noqa: E402


@pytest.fixture(scope="module")
def white_slide(tmp_path_factory):
    path = tmp_path_factory.mktemp("panel") / "white.png"
    Image.new("RGB", (3000, 2000), (255, 255, 255)).save(path)
    return path


@pytest.fixture()
def window(qtbot, tmp_path, monkeypatch):
    monkeypatch.setenv("HER2VIEWER_DATA", str(tmp_path / "data"))  # a fresh store per test
    loader = TileLoader(TileCache(64), workers=1)
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    win = MainWindow(loader, settings)
    qtbot.addWidget(win)
    win.resize(1100, 700)
    win.show()
    yield win
    win.annotations.close_all()
    loader.shutdown()


def classed(controller) -> dict[str, Annotation]:
    """A Tumor region holding a Stroma region, Negative points and an Other line."""
    anns = {
        "tumor": Annotation(shapely.box(500, 400, 1500, 1200), class_name="Tumor", name="T1"),
        "stroma": Annotation(shapely.box(600, 500, 800, 700), class_name="Stroma", name="S1"),
        "points": Annotation(
            shapely.MultiPoint([(1000, 900), (1100, 950), (2500, 1500)]),
            kind="points",
            class_name="Negative",
        ),
        "line": Annotation(
            shapely.LineString([(2000, 300), (2600, 300)]), kind="line", class_name="Other"
        ),
    }
    controller.stack.push(Add(list(anns.values())))
    return anns


@pytest.fixture()
def pane(window, white_slide, qtbot):
    """The active pane's controller, with :func:`classed` annotations in the panel."""
    assert window.open_in_pane(white_slide).wait()
    assert settle(window, 30)
    controller = window.annotations.active
    anns = classed(controller)
    tree = window.annotation_panel.tree
    qtbot.waitUntil(lambda: len(tree.items) == 4)
    return controller, anns


def test_annotations_dock_follows_the_active_pane(window, pane):
    controller, anns = pane
    dock = window.findChild(QDockWidget, "Annotations")
    assert dock is not None and dock.widget() is window.annotation_panel
    tree = window.annotation_panel.tree
    assert tree.controller is controller
    item = tree.items[anns["tumor"].id]
    window.set_active(controller.view)  # a click into the pane: no rebuild
    assert tree.items[anns["tumor"].id] is item


def test_tree_nests_and_measures_like_the_document(window, pane):
    controller, anns = pane
    tree = window.annotation_panel.tree
    assert tree.headerItem().text(2) == "Area (px²)"  # a PNG has no pixel size
    tumor, stroma = tree.items[anns["tumor"].id], tree.items[anns["stroma"].id]
    assert stroma.parent() is tumor and tumor.parent() is None
    assert tumor.text(0) == "Tumor" and tumor.text(1) == "T1"
    assert tumor.text(2) == "800,000.00" and stroma.text(2) == "40,000.00"
    assert tree.items[anns["points"].id].text(3) == "3"
    assert tree.items[anns["line"].id].text(2) == ""
    assert tree.topLevelItemCount() + tumor.childCount() == len(controller.document)


def test_click_selects_and_centres_the_view(window, pane, qtbot):
    controller, anns = pane
    tree = window.annotation_panel.tree
    item = tree.items[anns["line"].id]
    rect = tree.visualItemRect(item)
    qtbot.mouseClick(tree.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert controller.selected_ids == [anns["line"].id]
    state = controller.view.state
    assert (state.cx, state.cy) == pytest.approx((2300, 300), abs=1)
    controller.select([anns["tumor"].id])  # and the tree follows the pane's selection
    assert tree.selected_ids() == [anns["tumor"].id]


def test_tree_follows_add_undo_and_rename_row_by_row(window, pane, qtbot):
    controller, anns = pane
    tree = window.annotation_panel.tree
    tumor_item = tree.items[anns["tumor"].id]
    extra = Annotation(shapely.box(2000, 1500, 2200, 1700), class_name="Necrosis")
    controller.stack.push(Add([extra]))
    qtbot.waitUntil(lambda: extra.id in tree.items)
    assert tree.items[anns["tumor"].id] is tumor_item  # not rebuilt for one addition
    controller.stack.undo()
    qtbot.waitUntil(lambda: extra.id not in tree.items)
    tumor_item.setText(1, "invasive")  # as typed after a double click
    assert controller.document.get(anns["tumor"].id).name == "invasive"
    controller.stack.undo()
    qtbot.waitUntil(lambda: tree.items[anns["tumor"].id].text(1) == "T1")
    inner = Annotation(shapely.box(650, 550, 700, 600), class_name="Immune cells")
    controller.stack.push(Add([inner]))  # nests under the Stroma region
    qtbot.waitUntil(lambda: inner.id in tree.items)
    assert tree.items[inner.id].parent() is tree.items[anns["stroma"].id]


def test_class_panel_counts_and_edits(window, pane, qtbot, monkeypatch):
    controller, anns = pane
    panel = window.annotation_panel.classes
    rows = {panel.table.item(r, 0).text(): r for r in range(panel.table.rowCount())}
    assert panel.table.item(rows["Tumor"], 1).text() == "1"
    assert panel.table.item(rows["Tumor"], 2).text() == "800,000.00"
    assert panel.table.item(rows["Negative"], 3).text() == "3"
    assert panel.table.item(rows["Necrosis"], 1).text() == "0"

    monkeypatch.setattr(QInputDialog, "getText", lambda *a, **k: ("Mitosis", True))
    monkeypatch.setattr(QColorDialog, "getColor", lambda *a, **k: QColor(10, 20, 30))
    panel._ask_add()
    qtbot.waitUntil(lambda: panel.table.item(panel.table.rowCount() - 1, 0).text() == "Mitosis")
    assert controller.document.path_class("Mitosis").color == (10, 20, 30)

    panel.rename_class("Tumor", "Invasive tumor")
    assert controller.document.get(anns["tumor"].id).class_name == "Invasive tumor"
    panel.recolor_class("Stroma", (1, 2, 3))
    assert controller.document.path_class("Stroma").color == (1, 2, 3)
    panel.remove_class("Mitosis")
    assert controller.document.path_class("Mitosis") is None
    with qtbot.waitSignal(window.annotation_panel.error) as refused:
        panel.add_class("Stroma", (0, 0, 0))
    assert "Stroma" in refused.args[0] and "\n" not in refused.args[0]
    controller.stack.undo()  # the removal
    assert controller.document.path_class("Mitosis") is not None


def test_measurements_export_escaped_csv(window, pane, tmp_path, qtbot):
    controller, anns = pane
    controller.stack.push(Add([Annotation(shapely.box(0, 0, 10, 10), name="=HYPERLINK(1)")]))
    table = window.annotation_panel.measurements
    window.annotation_panel.setCurrentWidget(table)
    qtbot.waitUntil(lambda: table.model.rowCount() == 5)
    out = tmp_path / "measurements.csv"
    table.export_csv(out)
    with out.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 5
    by_id = {row["id"]: row for row in rows}
    tumor = by_id[anns["tumor"].id]
    assert float(tumor["area_px2"]) == 800000.0 and tumor["class"] == "Tumor"
    assert tumor["n_points Negative"] == "2"  # two of the three points lie inside
    assert by_id[anns["points"].id]["n_points"] == "3"
    assert "'=HYPERLINK(1)" in [row["name"] for row in rows]


def test_areas_in_square_micrometres_when_the_slide_has_a_pixel_size(qtbot):
    class Pane(QObject):
        selection_changed = Signal()

        def __init__(self, document):
            super().__init__()
            self.document, self.stack, self.selected_ids = document, CommandStack(document), []

    document = AnnotationDocument(
        [Annotation(shapely.box(0, 0, 100, 50), class_name="Tumor")], mpp=0.5
    )
    panel = AnnotationPanel()
    qtbot.addWidget(panel)
    panel.set_controller(Pane(document))
    assert panel.tree.headerItem().text(2) == "Area (µm²)"
    assert panel.tree.topLevelItem(0).text(2) == "1,250.00"
    assert panel.classes.table.horizontalHeaderItem(2).text() == "Area (µm²)"
    header, rows = panel.measurements.rows()
    assert rows[0][header.index("area_um2")] == pytest.approx(1250.0)
