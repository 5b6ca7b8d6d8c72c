"""The Display dock: levels, reset/auto, stain views, image type, pixel size, exports."""

import cv2
import numpy as np
import pytest
import tifffile

pytest.importorskip("PySide6")

from PySide6.QtCore import QSettings  # noqa: E402

from her2viewer.gui.app import settle  # noqa: E402
from her2viewer.gui.exports import save_snapshot  # noqa: E402
from her2viewer.gui.mainwindow import MainWindow  # noqa: E402
from her2viewer.gui.slideview import BACKGROUND as PANE_BACKGROUND  # noqa: E402
from her2viewer.gui.tiles import TileCache, TileLoader  # noqa: E402
from her2viewer.overlay import HeatmapLayer  # noqa: E402
from her2viewer.overlay.region import output_size  # noqa: E402
from her2viewer.slide import open_slide  # noqa: E402
from her2viewer.slide.settings import load_settings  # noqa: E402
from her2viewer.slide.synthetic import CaseSpec, write_case  # noqa: E402

BACKGROUND = np.array(PANE_BACKGROUND.getRgb()[:3])


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    out = tmp_path_factory.mktemp("display_case")
    write_case(CaseSpec("d", 2, 3000, 2400, seed=5, index=0), out)
    return out / "d"


@pytest.fixture()
def window(qtbot, tmp_path):
    loader = TileLoader(TileCache(96), workers=2)
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    win = MainWindow(loader, settings)
    qtbot.addWidget(win)
    win.resize(1100, 650)
    win.show()
    yield win
    loader.shutdown()


def _open(window, qtbot, *paths):
    assert window.open_slides(list(paths)).wait()
    panel = window.display_panel
    for view in window.views[: len(paths)]:
        view.show_hud = False  # the pixels of the slide only
        qtbot.waitUntil(lambda v=view: panel.image_type_of(v) is not None, timeout=15000)
    assert settle(window, 30)
    return window.views[0], panel


def _pixels(view) -> np.ndarray:
    image = view.grab().toImage().convertToFormat(view.grab().toImage().Format.Format_RGB888)
    w, h = image.width(), image.height()
    rows = np.frombuffer(image.constBits(), np.uint8).reshape(h, image.bytesPerLine())
    return rows[:, : w * 3].reshape(h, w, 3).copy()


def _redrawn(window, view) -> np.ndarray:
    assert settle(window, 30)
    view.repaint()
    return _pixels(view)


def test_sliders_change_the_pixels_drawn_and_reset_restores_them(window, case, qtbot):
    view, panel = _open(window, qtbot, case / "he.svs")
    before = _redrawn(window, view).astype(int)
    panel.sliders["Brightness"].setValue(-50)
    darker = _redrawn(window, view).astype(int)
    assert darker.mean() < before.mean() - 40
    panel.sliders["Brightness"].setValue(0)
    panel.sliders["Gamma"].setValue(60)  # gamma > 1 brightens the mid-tones
    assert _redrawn(window, view).astype(int).mean() > before.mean() + 3
    panel.sliders["Contrast"].setValue(50)
    assert not view.display.neutral
    panel.reset.click()
    assert view.display.neutral and panel.sliders["Gamma"].value() == 0
    assert np.abs(_redrawn(window, view).astype(int) - before).max() <= 2


def test_auto_stretches_the_overview_and_moves_the_sliders(window, case, qtbot):
    view, panel = _open(window, qtbot, case / "ihc.svs")
    before = _redrawn(window, view).astype(int)
    panel.auto.click()
    levels = view.display.levels
    assert levels[0] == levels[1] == levels[2]  # brightfield: one range for all channels
    assert levels[0].black > 0 and panel.sliders["Contrast"].value() > 0
    assert np.abs(_redrawn(window, view).astype(int) - before).mean() > 3


def test_stain_view_shows_one_colour_on_white(window, case, qtbot):
    view, panel = _open(window, qtbot, case / "ihc.svs")
    qtbot.waitUntil(lambda: panel.estimated_matrix(view) is not None, timeout=15000)
    assert [panel.stain.itemData(i) for i in range(panel.stain.count())] == [
        None,
        "hematoxylin",
        "dab",
    ]
    panel.stain.setCurrentIndex(1)
    panel.stain.activated.emit(1)
    assert view.display.stain == "hematoxylin"
    rgb = _redrawn(window, view)
    od = -np.log10(np.maximum(rgb.reshape(-1, 3), 1) / 255.0)
    stained = od[od.sum(axis=1) > 0.3]
    assert len(stained) > 1000
    direction = stained / np.linalg.norm(stained, axis=1, keepdims=True)
    vector = np.array(view.display.matrix[0])
    assert np.percentile(direction @ vector, 5) > 0.97  # every stained pixel: the one colour
    panel.grey.setChecked(True)
    grey = _redrawn(window, view).astype(int)
    slide = grey[(grey != BACKGROUND).any(axis=-1)]  # not the pane's margin around the slide
    assert np.abs(slide[:, 0] - slide[:, 2]).max() <= 2 and slide.std() > 5


def test_image_type_is_guessed_stored_and_restored(window, case, qtbot, tmp_path):
    he_view, panel = _open(window, qtbot, case / "he.svs", case / "ihc.svs")
    ihc_view = window.views[1]
    assert panel.image_type_of(he_view) == "brightfield-he"
    assert panel.image_type_of(ihc_view) == "brightfield-hdab"
    assert not panel.channel.isEnabled() and "Fluorescence" in panel.channel.toolTip()
    window.set_active(ihc_view)
    index = panel.image_type.findData("fluorescence")
    panel.image_type.setCurrentIndex(index)
    panel.image_type.activated.emit(index)
    assert panel.channel.isEnabled() and not panel.stain.isEnabled()
    assert load_settings(ihc_view.slide.info.fingerprint).image_type == "fluorescence"
    panel.channel.setCurrentIndex(2)  # green only
    panel.sliders["Brightness"].setValue(40)
    levels = ihc_view.display.levels
    assert levels[0].neutral and levels[2].neutral and not levels[1].neutral

    settings = QSettings(str(tmp_path / "b.ini"), QSettings.Format.IniFormat)
    again = MainWindow(window.loader, settings)
    qtbot.addWidget(again)
    again.show()
    assert again.open_in_pane(case / "ihc.svs").wait()
    view = again.views[0]
    qtbot.waitUntil(lambda: again.display_panel.image_type_of(view) is not None, timeout=15000)
    assert again.display_panel.image_type_of(view) == "fluorescence"


def test_pixel_size_override_is_stored_and_used_by_the_scale_bar(window, qtbot, tmp_path):
    rng = np.random.default_rng(0)
    image = np.full((1500, 2000, 3), 240, np.uint8)
    image[400:1100, 500:1500] = rng.integers(80, 200, (700, 1000, 3))
    path = tmp_path / "no_mpp.png"
    cv2.imwrite(str(path), image)
    view, panel = _open(window, qtbot, path)
    assert view.slide.info.mpp_x is None and view.magnification() is None
    assert panel.set_mpp.isEnabled() and not panel.clear_mpp.isEnabled()
    view.show_hud = True
    panel.set_pixel_size(0.5)
    assert view.slide.info.mpp_x == 0.5 and view.slide.info.mpp_set_by_user
    assert view.magnification() == pytest.approx(20.0 / view.state.downsample)  # 0.5 um: 20x
    hud = view.grab()
    assert hud.width() > 0 and "set by user" in panel.mpp_note.text()
    table = window.properties.table
    rows = {table.item(i, 0).text(): table.item(i, 1).text() for i in range(table.rowCount())}
    assert rows["Pixel size"].endswith("(set by user)")
    reopened = open_slide(path)
    assert reopened.info.mpp_x == 0.5 and reopened.info.mpp_set_by_user
    panel.set_pixel_size(None)
    assert view.slide.info.mpp_x is None and open_slide(path).info.mpp_x is None


def test_pixel_size_of_a_file_that_records_one_cannot_be_set(window, case, qtbot):
    view, panel = _open(window, qtbot, case / "he.svs")
    assert not panel.set_mpp.isEnabled()
    assert "cannot be overridden" in panel.set_mpp.toolTip()


def test_snapshot_and_region_export_from_the_app(window, case, qtbot, tmp_path):
    view, panel = _open(window, qtbot, case / "he.svs")
    scores = np.linspace(0, 1, 48, dtype=np.float32).reshape(6, 8)
    view.add_layer(HeatmapLayer("score", values=scores, downsample=375))
    assert settle(window, 30)
    snap = save_snapshot(view, tmp_path / "snap.png", legend=True)
    image = cv2.imread(str(snap))
    assert image.shape[:2] == (view.height(), view.width())
    rect = (100, 200, 1300, 700)
    job = window.exports.export(view, tmp_path / "region.tif", 2.0, rect)
    job.result(timeout=60)
    pixels = tifffile.imread(tmp_path / "region.tif")
    assert pixels.shape[:2][::-1] == output_size(rect, 2.0)
    assert window.exports.export(view, tmp_path / "region.jpg", 1.0, rect) is None
    assert "png, .tif or .tiff" in window.errors[-1]
