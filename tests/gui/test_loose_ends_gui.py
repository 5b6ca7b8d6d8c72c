"""GUI loose ends: the grading dock keeps its model loaded, the magnifier shows what the pane
shows (display settings and overlays), the measurement table updates row by row."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
import shapely

pytest.importorskip("PySide6")

from PySide6.QtCore import QObject, QPoint, Signal  # noqa: E402
from PySide6.QtGui import QImage  # noqa: E402

from her2viewer.analysis import grade  # noqa: E402
from her2viewer.annotations.commands import Add, CommandStack, Rename, Replace  # noqa: E402
from her2viewer.annotations.model import Annotation, AnnotationDocument  # noqa: E402
from her2viewer.gui import grading_model  # noqa: E402
from her2viewer.gui.annotations.panel import RELOAD_ABOVE, MeasurementTable  # noqa: E402
from her2viewer.gui.grading_panel import attach_grading_panel  # noqa: E402
from her2viewer.gui.magnifier import RADIUS, ZOOM, Magnifier  # noqa: E402
from her2viewer.models.patch_cnn import default_grading_bundle  # noqa: E402
from her2viewer.overlay.display import DisplaySettings, Levels, apply_display  # noqa: E402
from her2viewer.overlay.layers import HeatmapLayer  # noqa: E402


@pytest.fixture(autouse=True)
def own_stores(tmp_path, monkeypatch):
    """Annotation stores of this test only: what it draws on the shared cases stays here."""
    monkeypatch.setenv("HER2VIEWER_DATA", str(tmp_path / "data"))


# -- the grading dock keeps its model -----------------------------------------------------


@pytest.fixture()
def counted_loads(monkeypatch):
    """The checkpoints the grading dock's worker side loads, in order (none kept before)."""
    loads = []
    load = grading_model.load_patch_cnn

    def counting(path, *args, **kwargs):
        loads.append(path)
        return load(path, *args, **kwargs)

    monkeypatch.setattr(grading_model, "load_patch_cnn", counting)
    monkeypatch.setattr(grade, "load_patch_cnn", counting)  # a load the dock did not keep
    monkeypatch.setattr(grading_model, "_kept", {})
    return loads


def _grade(panel, qtbot, start) -> None:
    start()
    assert panel.job is not None, panel.window.errors
    qtbot.waitUntil(lambda: panel.job is None, timeout=120_000)
    assert panel.result is not None, panel.status.text()


def test_grading_dock_and_gradcam_load_the_model_once_until_the_checkpoint_changes(
    panel_window, synthetic_case, qtbot, tmp_path, counted_loads
):
    window = panel_window
    bundle = tmp_path / "grading"
    shutil.copytree(default_grading_bundle(), bundle)
    panel = attach_grading_panel(window, bundle)
    panel.widget.process = False  # in this process, where the loads are counted
    assert window.open_in_pane(str(synthetic_case / "ihc.svs"), 0).wait()
    _grade(panel, qtbot, panel.run)
    controller = window.annotations.active
    region = Annotation(shapely.box(600, 500, 2400, 1900), kind="rectangle", class_name="Tumor")
    assert controller.push(Add([region]))
    controller.select([region.id])
    _grade(panel, qtbot, panel.chooser.score_selected)  # another region: no second load
    assert panel.result.roi["region"] and len(counted_loads) == 1
    stamp = grading_model.checkpoint_stamp(bundle)
    weights = next(p for p in bundle.iterdir() if p.suffix == ".safetensors")
    os.utime(weights, ns=(stamp + 10**9, stamp + 10**9))  # the checkpoint rewritten
    _grade(panel, qtbot, panel.run)
    assert counted_loads == [bundle, bundle]
    window.views[0].zoom_at(8.0)  # a view small enough for Grad-CAM
    _grade(panel, qtbot, panel.widget.run_gradcam)  # Grad-CAM uses the model kept too
    assert counted_loads == [bundle, bundle] and panel.widget.cam is not None


# -- the measurement table follows edits row by row ---------------------------------------


class Pane(QObject):
    """The part of an annotation controller the measurement table reads."""

    selection_changed = Signal()

    def __init__(self, document):
        super().__init__()
        self.document, self.stack, self.selected_ids = document, CommandStack(document), []


@pytest.fixture()
def measured(qtbot):
    """A shown measurement table over three areas and a point set, and its model's signals."""
    areas = [Annotation(shapely.box(x, 0, x + 100, 100), class_name="Tumor") for x in (0, 200, 400)]
    points = Annotation(shapely.MultiPoint([(10, 10), (20, 20), (210, 10)]), kind="points")
    pane = Pane(AnnotationDocument([*areas, points], mpp=0.5))
    table = MeasurementTable()
    qtbot.addWidget(table)
    table.show()
    table.set_controller(pane)
    signals = {"reset": [], "changed": [], "inserted": [], "removed": []}
    model = table.model
    model.modelReset.connect(lambda: signals["reset"].append(1))
    model.dataChanged.connect(lambda a, b: signals["changed"].append((a.row(), b.row())))
    model.rowsInserted.connect(lambda _p, first, last: signals["inserted"].append((first, last)))
    model.rowsRemoved.connect(lambda _p, first, last: signals["removed"].append((first, last)))
    return pane, table, signals, areas, points


def _by_id(table) -> dict:
    header, rows = table.rows()
    return {row[0]: dict(zip(header, row, strict=True)) for row in rows}


def test_an_edit_updates_only_its_row(measured):
    pane, table, signals, areas, points = measured
    cell = table.model.index(1, 0)
    pane.stack.push(Rename(areas[1].id, "T2"))
    table.follower._flush()
    assert signals == {"reset": [], "changed": [(1, 1)], "inserted": [], "removed": []}
    assert table.model.data(cell) == "T2"
    extra = Annotation(shapely.box(600, 0, 700, 100), kind="rectangle")
    pane.stack.push(Add([extra]))
    table.follower._flush()
    assert signals["inserted"] == [(4, 4)] and not signals["reset"]
    pane.stack.undo()
    table.follower._flush()
    assert signals["removed"] == [(4, 4)] and not signals["reset"]


def test_a_moved_point_set_recounts_the_areas_it_left_and_entered(measured):
    pane, table, signals, areas, points = measured
    assert _by_id(table)[areas[0].id]["n_points Unclassified"] == 2
    moved = points.replace(geometry=shapely.MultiPoint([(410, 10), (420, 20), (210, 10)]))
    pane.stack.push(Replace({points.id: moved}))
    table.follower._flush()
    assert sorted(signals["changed"]) == [(0, 0), (1, 1), (2, 2), (3, 3)]
    assert not signals["reset"]
    incremental = _by_id(table)
    table.refresh()  # everything measured again: the same figures
    assert _by_id(table) == incremental
    assert incremental[areas[0].id]["n_points Unclassified"] == 0
    assert incremental[areas[2].id]["n_points Unclassified"] == 2


def test_a_bulk_load_is_one_model_reset(measured):
    pane, table, signals, _areas, _points = measured
    many = [
        Annotation(shapely.box(x, 500, x + 5, 505)) for x in range(0, 5 * (RELOAD_ABOVE + 1), 5)
    ]
    pane.stack.push(Add(many))
    table.follower._flush()
    assert signals["reset"] == [1] and not signals["inserted"]
    assert table.model.rowCount() == 4 + len(many)


# -- the magnifier shows what the pane shows ----------------------------------------------


def _rgb(view) -> np.ndarray:
    image = view.grab().toImage().convertToFormat(QImage.Format.Format_RGB888)
    w, h = image.width(), image.height()
    rows = np.frombuffer(image.constBits(), np.uint8).reshape(h, image.bytesPerLine())
    return rows[:, : w * 3].reshape(h, w, 3).copy()


@pytest.fixture()
def lens_pane(panel_window, synthetic_case, qtbot):
    """The H&E pane fully loaded, its lens and a function grabbing the lens's inner box."""
    window = panel_window
    assert window.open_in_pane(synthetic_case / "he.svs", 0).wait()
    view = window.views[0]
    qtbot.waitUntil(view.fully_loaded, timeout=20000)
    lens = next(p for p in view.vector_painters if isinstance(p, Magnifier))
    centre = QPoint(view.width() // 2, view.height() // 2)
    inner = int(RADIUS * 0.6)

    def grab() -> np.ndarray:
        lens.show_at(centre)
        qtbot.waitUntil(
            lambda: view.fully_loaded() and view.loader.pending(id(lens)) == 0, timeout=20000
        )
        qtbot.wait(50)
        image = _rgb(view)
        return image[
            centre.y() - inner : centre.y() + inner, centre.x() - inner : centre.x() + inner
        ].astype(np.float32)

    return window, view, lens, grab


def test_the_lens_applies_the_display_settings(lens_pane):
    _window, view, _lens, grab = lens_pane
    plain = grab()
    display = DisplaySettings().with_levels(Levels(black=120.0, white=200.0, gamma=0.5))
    view.set_display(display)
    shown = grab()
    expected = apply_display(plain.astype(np.uint8), display).astype(np.float32)
    assert np.median(np.abs(shown - expected)) < 6  # the levels, as the pane draws them
    assert np.median(np.abs(shown - plain)) > 20


def test_the_lens_shows_visible_overlays_only(lens_pane, tmp_path):
    window, view, lens, grab = lens_pane
    plain = grab()
    info = view.slide.info
    heat = HeatmapLayer(
        "score", values=np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8),
        downsample=max(info.width, info.height) / 8, opacity=1.0,
    )  # fmt: skip
    view.add_layer(heat)
    covered = grab()
    assert np.median(np.abs(covered - plain)) > 30  # the heatmap, not the tissue
    lens.show_at(lens.centre)
    view.grab().save(str(tmp_path / "lens_over_heatmap.png"))
    heat.visible = False
    view.refresh()
    assert np.array_equal(grab(), plain)  # a hidden layer is not in the lens
    controller = window.annotations.active
    x, y = view.screen_to_level0(lens.centre.x(), lens.centre.y())
    reach = RADIUS * view.state.downsample / ZOOM
    edge = x + reach / 2  # on screen: half a radius right of the lens centre, 4x
    assert controller.push(
        Add([Annotation(shapely.box(edge, y - reach, x + 2 * reach, y + reach))])
    )
    outlined = grab()
    changed = np.abs(outlined - plain).max(axis=(0, 2))  # per lens column
    middle = len(changed) // 2
    at_edge = middle + int(RADIUS / 2)
    assert changed[at_edge - 3 : at_edge + 4].max() > 60  # the outline, magnified
    assert changed[: middle + int(RADIUS / 2) - 8].max() < 10  # nothing left of it
