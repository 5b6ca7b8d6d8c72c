"""Viewer tests: offscreen with pytest-qt, plus one real window under Xvfb."""

import os
import shutil
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("PySide6")

from PySide6.QtCore import QPointF, QSettings, Qt  # noqa: E402
from PySide6.QtWidgets import QApplication, QMessageBox  # noqa: E402

from her2viewer.cli import main as cli_main  # noqa: E402
from her2viewer.gui.app import settle  # noqa: E402
from her2viewer.gui.mainwindow import MainWindow  # noqa: E402
from her2viewer.gui.slideview import SlideView  # noqa: E402
from her2viewer.gui.tiles import CachedTile, TileCache, TileKey, TileLoader  # noqa: E402
from her2viewer.overlay import MaskLayer  # noqa: E402
from her2viewer.slide.synthetic import CaseSpec, write_case  # noqa: E402

CASE_SIZE = (3000, 2400)


@pytest.fixture(scope="session")
def case(tmp_path_factory):
    """A small synthetic paired case (H&E, IHC, truth)."""
    out = tmp_path_factory.mktemp("gui_case")
    truth = write_case(CaseSpec("g", 2, *CASE_SIZE, seed=3, index=0), out)
    return out / "g", truth


@pytest.fixture()
def loader():
    loader = TileLoader(TileCache(64), workers=2)
    yield loader
    loader.shutdown()


@pytest.fixture()
def window(qtbot, loader, tmp_path):
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    win = MainWindow(loader, settings)
    qtbot.addWidget(win)
    win.resize(1200, 700)
    win.show()
    return win


def _pink_fraction(image) -> float:
    """Fraction of pixels that look like H&E tissue (pink/purple, not glass or chrome)."""
    qimage = image.toImage().convertToFormat(image.toImage().Format.Format_RGB888)
    w, h = qimage.width(), qimage.height()
    array = np.frombuffer(qimage.constBits(), np.uint8).reshape(h, qimage.bytesPerLine())
    rgb = array[:, : w * 3].reshape(h, w, 3).astype(int)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    return float(((r - g > 40) & (b - g > 30)).mean())


def _record_reads(slide):
    """Wrap a slide's reader to record which threads read pixels."""
    threads = []
    original = slide._read

    def hooked(*args):
        threads.append(threading.current_thread() is threading.main_thread())
        return original(*args)

    slide._read = hooked
    return threads


def test_tile_cache_is_lru_and_bounded():
    cache = TileCache(limit_mb=1)
    tile = CachedTile(None, np.zeros((300, 300, 4), np.uint8))  # 360 kB
    keys = [TileKey("slide", 1, 0, 0, i, 0) for i in range(3)]
    for key in keys:
        cache.put(key, tile)
        cache.get(keys[0])  # keep the first one hot
    assert cache.nbytes <= cache.limit_bytes
    assert keys[0] in cache and keys[1] not in cache
    assert cache.hit_rate() > 0


def test_open_zoom_pan_keys_and_no_gui_thread_reads(window, case, qtbot):
    case_dir, _ = case
    assert window.open_in_pane(case_dir / "he.svs").wait()
    view = window.views[0]
    reads = _record_reads(view.slide)
    assert settle(window, 30)
    assert _pink_fraction(view.grab()) > 0.05
    fit_ds = view.state.downsample
    centre = QPointF(view.width() / 2, view.height() / 2)
    anchor = view.screen_to_level0(300, 200)
    view.zoom_at(3.0, QPointF(300, 200))  # 4x would pass the scan's own pixels, the limit
    assert view.state.downsample == pytest.approx(fit_ds / 3)
    after = view.screen_to_level0(300, 200)
    assert after == pytest.approx(anchor, abs=1e-6)  # zoom about the cursor
    before = (view.state.cx, view.state.cy)
    qtbot.mousePress(view, Qt.MouseButton.LeftButton, pos=centre.toPoint())
    qtbot.mouseMove(view, (centre + QPointF(100, 50)).toPoint())
    qtbot.mouseRelease(view, Qt.MouseButton.LeftButton, pos=(centre + QPointF(100, 50)).toPoint())
    assert view.state.cx < before[0] and view.state.cy < before[1]
    qtbot.keyClick(view, Qt.Key.Key_Home)
    assert view.state.downsample == pytest.approx(fit_ds)
    view.set_magnification(10)
    assert view.magnification() == pytest.approx(10)
    assert settle(window, 30)
    assert view.stats.right_level_fraction == 1.0
    assert reads and not any(reads), "pixels were read on the GUI thread"
    assert 10.0 in view.available_presets() and 40.0 not in view.available_presets()


def test_zooming_ahead_of_the_loader_draws_coarser_stand_ins(window, case, qtbot):
    case_dir, _ = case
    assert window.open_in_pane(case_dir / "he.svs").wait()
    view = window.views[0]
    qtbot.waitUntil(view.fully_loaded, timeout=15000)
    fitted = _pink_fraction(view.grab())
    with view.loader.painting():  # holds back every new tile job, like a slow disk
        view.zoom_at(4.0)
        view.repaint()
        assert view.stats.missing == view.stats.tiles > 0  # nothing of this level yet
        ahead = _pink_fraction(view.grab())
    assert fitted > 0.05 and ahead > 0.5 * fitted  # tissue drawn from coarser tiles, not blank
    qtbot.waitUntil(view.fully_loaded, timeout=15000)


def test_wheel_zooms_smoothly_about_the_cursor(window, case, qtbot):
    from PySide6.QtCore import QPoint
    from PySide6.QtGui import QWheelEvent

    case_dir, _ = case
    assert window.open_in_pane(case_dir / "he.svs").wait()
    qtbot.waitExposed(window)
    settle(window, 30)
    view = window.views[0]
    start = view.state.downsample
    pos = QPointF(150, 120)
    anchor = view.screen_to_level0(pos.x(), pos.y())
    event = QWheelEvent(
        pos,
        view.mapToGlobal(pos),
        QPoint(0, 0),
        QPoint(0, 240),
        Qt.MouseButton.NoButton,
        Qt.KeyboardModifier.NoModifier,
        Qt.ScrollPhase.NoScrollPhase,
        False,
    )
    QApplication.sendEvent(view, event)
    qtbot.waitUntil(lambda: not view._animator.isActive(), timeout=5000)
    assert view.state.downsample == pytest.approx(start / 1.25**2, rel=1e-3)
    assert view.screen_to_level0(pos.x(), pos.y()) == pytest.approx(anchor, abs=1.0)


def test_layer_toggle_and_opacity(window, case):
    case_dir, truth = case
    window.open_in_pane(case_dir / "he.svs").wait()
    view = window.views[0]
    tumor = MaskLayer.from_png(
        "tumor",
        case_dir / "tumor_mask.png",
        truth["mask_downsample"],
        colors={1: (0, 255, 0)},
        opacity=1.0,
    )
    window.add_layer(tumor)
    assert settle(window, 30)

    def green():
        image = view.grab().toImage()
        pixels = [
            image.pixelColor(x, y)
            for x in range(0, image.width(), 7)
            for y in range(0, image.height(), 7)
        ]
        return sum(c.green() > 200 and c.red() < 80 and c.blue() < 80 for c in pixels)

    shown = green()
    assert shown > 50
    panel = window.layers_panel
    assert panel.list.count() == 1
    panel.list.item(0).setCheckState(Qt.CheckState.Unchecked)
    assert not tumor.visible
    settle(window, 10)
    assert green() == 0
    panel.list.item(0).setCheckState(Qt.CheckState.Checked)
    version = tumor.version
    panel.opacity.setValue(30)
    assert tumor.opacity == pytest.approx(0.3) and tumor.version == version  # no re-colouring
    settle(window, 10)
    assert green() < shown


def test_sync_through_known_transform(window, case, qtbot, tmp_path):
    from her2viewer.registration import Registration

    case_dir, truth = case
    # through a saved transform file, as `view --transform` and the IHC panel's Save give it
    saved = Registration(np.asarray(truth["transform_ihc_to_he"]), "truth", 0.0).save(
        tmp_path / "reg.json"
    )
    matrix = Registration.load(saved).matrix
    assert window.open_slides([case_dir / "he.svs", case_dir / "ihc.svs"], matrix).wait()
    he, ihc = window.views
    # opening the IHC did not move the H&E pane (it stays fitted on its own centre)
    assert (he.state.cx, he.state.cy) == (truth["width"] / 2, truth["height"] / 2)
    qtbot.waitExposed(window)
    settle(window, 30)
    assert window.sync.has_transform(ihc)
    he.zoom_at(3.0, QPointF(200, 150))
    he.pan_by(-40, 25)
    inverse = np.linalg.inv(matrix)
    for sx, sy in ((ihc.width() / 2, ihc.height() / 2), (50, 60), (ihc.width() - 30, 20)):
        he_point = he.screen_to_level0(sx, sy)
        ihc_point = ihc.screen_to_level0(sx, sy)
        expected = inverse @ [*he_point, 1.0]
        assert np.hypot(*(np.array(ihc_point) - expected[:2])) < 2.0
    qtbot.mouseMove(he, QPointF(120, 90).toPoint())
    cursor = he.screen_to_level0(120, 90)
    assert np.allclose(ihc.crosshair, (inverse @ [*cursor, 1.0])[:2], atol=2.0)
    window.sync_box.setChecked(False)
    state = (ihc.state.cx, ihc.state.cy)
    he.pan_by(100, 0)
    assert (ihc.state.cx, ihc.state.cy) == state  # unlinked


def test_relative_sync_without_transform(window, case, qtbot):
    case_dir, _ = case
    assert window.open_slides([case_dir / "he.svs", case_dir / "ihc.svs"]).wait()
    qtbot.waitExposed(window)
    settle(window, 30)
    he, ihc = window.views
    assert not window.sync.has_transform(ihc)
    he.zoom_at(2.0)
    he_start, ihc_start = he.state.cx, ihc.state.cx
    he.pan_by(-50, 0)
    ratio = ihc.state.downsample / he.state.downsample
    assert he.state.cx > he_start
    assert ihc.state.cx - ihc_start == pytest.approx((he.state.cx - he_start) * ratio, rel=1e-6)


def test_minimap_moves_the_view_and_scale_bar_readouts(window, case, qtbot):
    case_dir, _ = case
    assert window.open_in_pane(case_dir / "he.svs").wait()
    qtbot.waitExposed(window)
    settle(window, 30)
    view, minimap = window.views[0], window.minimap
    view.zoom_at(4.0)
    rect = minimap._image_rect()
    target = rect.topLeft() + QPointF(rect.width() * 0.25, rect.height() * 0.25)
    qtbot.mouseClick(minimap, Qt.MouseButton.LeftButton, pos=target.toPoint())
    assert view.state.cx == pytest.approx(CASE_SIZE[0] * 0.25, rel=0.05)
    assert view.state.cy == pytest.approx(CASE_SIZE[1] * 0.25, rel=0.05)
    qtbot.mouseMove(view, QPointF(40, 40).toPoint())
    assert "level 0" in window._status["pos"].text()
    assert window._status["mag"].text().endswith("x")


def test_errors_show_a_dialog_and_app_keeps_running(window, case, tmp_path, qtbot):
    bad = tmp_path / "broken.svs"
    bad.write_bytes(b"not a slide at all")
    assert not window.open_in_pane(tmp_path / "missing.svs").wait()
    assert not window.open_in_pane(bad).wait()
    assert "missing.svs" in window.errors[0] and "broken.svs" in window.errors[1]
    boxes = [w for w in QApplication.topLevelWidgets() if isinstance(w, QMessageBox)]
    assert any(b.isVisible() for b in boxes)
    bad_json = tmp_path / "x.geojson"
    bad_json.write_text("{")
    assert not window.add_geojson(bad_json)
    case_dir, _ = case
    assert window.open_in_pane(case_dir / "he.svs").wait()  # still works
    assert window.recent_files()[0].endswith("he.svs")


def test_failing_tiles_raise_one_box_per_slide(window, case, qtbot):
    case_dir, _ = case
    assert window.open_in_pane(case_dir / "he.svs").wait()
    owner = id(window.views[0])
    before = len(window.errors)
    for x in range(5):
        window._on_tile_failed(owner, f"he.svs could not be decoded at ({x}, 0).")
    assert len(window.errors) == before + 1
    assert "5 tiles" in window.statusBar().currentMessage()
    assert window.open_in_pane(case_dir / "he.svs").wait()  # reopening resets the count
    window._on_tile_failed(owner, "again")
    assert len(window.errors) == before + 2


def test_drop_and_file_dialog_open_slides_and_layers(window, case, tmp_path, monkeypatch, qtbot):
    from PySide6.QtCore import QMimeData, QUrl
    from PySide6.QtGui import QDropEvent
    from PySide6.QtWidgets import QFileDialog

    case_dir, _ = case
    geojson = tmp_path / "ring.geojson"
    geojson.write_text(
        '{"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {},'
        ' "geometry": {"type": "Polygon", "coordinates": [[[10, 10], [900, 10], [900, 700],'
        " [10, 10]]]}}]}"
    )
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(case_dir / "ihc.svs")), QUrl.fromLocalFile(str(geojson))])
    event = QDropEvent(
        QPointF(50, 50),
        Qt.DropAction.CopyAction,
        mime,
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
    )
    window.dropEvent(event)
    qtbot.waitUntil(lambda: bool(window.views[0].layers), timeout=30_000)  # after the slide
    assert window.slides[0].info.path.endswith("ihc.svs")
    assert [layer.kind for layer in window.views[0].layers] == ["vector"]
    chosen = str(case_dir / "he.svs")
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (chosen, ""))
    window.open_dialog()
    qtbot.waitUntil(lambda: not window.opening, timeout=30_000)  # the H&E, then its IHC pair
    assert window.slides[0].info.path == chosen
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: ("", ""))
    window.open_dialog()  # cancelled: nothing changes
    assert window.slides[0].info.path == chosen


def test_properties_show_the_associated_images(window, case, qtbot):
    case_dir, _ = case
    assert window.open_in_pane(case_dir / "he.svs").wait()
    panel = window.properties
    with qtbot.waitSignal(panel.images_ready, timeout=10000):
        pass
    labels = [panel.images.itemAt(i).widget() for i in range(panel.images.count())]
    assert {label.toolTip() for label in labels} >= {"label", "macro"}
    for label in labels:
        image = label.pixmap().toImage()
        assert image.width() > 20 and image.height() > 20
        assert len({image.pixel(x, image.height() // 2) for x in range(image.width())}) > 1
    rows = {
        panel.table.item(i, 0).text(): panel.table.item(i, 1).text()
        for i in range(panel.table.rowCount())
    }
    assert rows["Pixel size"].startswith("0.5000") and rows["Objective"] == "20x"


def test_view_cli_screenshot_and_errors(case, tmp_path, capsys):
    case_dir, _ = case
    out = tmp_path / "shot.png"
    code = cli_main(
        [
            "view",
            str(case_dir / "he.svs"),
            str(case_dir / "ihc.svs"),
            "--screenshot",
            str(out),
            "--size",
            "900x600",
        ]
    )
    assert code == 0 and out.stat().st_size > 10000
    assert "rendered the viewer offscreen" in capsys.readouterr().out
    assert cli_main(["view", str(tmp_path / "nope.svs"), "--screenshot", str(out)]) == 2
    assert "nope.svs" in capsys.readouterr().err
    assert cli_main(["view"]) == 2
    bad = tmp_path / "t.json"
    bad.write_text('{"matrix": [1, 2]}')
    assert cli_main(["view", str(case_dir / "he.svs"), "--transform", str(bad)]) == 2
    assert "3x3" in capsys.readouterr().err


def test_stale_requests_are_dropped(loader, case, qtbot):
    case_dir, _ = case
    from her2viewer.slide import open_slide

    view = SlideView(loader)
    qtbot.addWidget(view)
    view.resize(400, 300)
    view.show()
    with open_slide(case_dir / "he.svs") as slide:
        view.set_slide(slide)
        view.set_magnification(20)
        view._submit_requests()
        first = {r[1] for r in view.request_list()}
        view.center_on(10, 10)
        view._submit_requests()
        queued = {r.key for r in loader._heap}
        assert not (queued & (first - {r[1] for r in view.request_list()}))
        loader.wait_idle(20)


XVFB_SCRIPT = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    from PySide6.QtCore import QPoint, Qt
    from PySide6.QtTest import QTest
    from her2viewer.gui.app import make_app, settle
    from her2viewer.gui.mainwindow import MainWindow
    from her2viewer.gui.tiles import TileCache, TileLoader

    app = make_app()
    assert app.platformName() == "xcb", app.platformName()
    window = MainWindow(TileLoader(TileCache(64)))
    window.resize(1000, 700)
    window.show()
    QTest.qWaitForWindowExposed(window)
    window.open_in_pane(sys.argv[1]).wait()
    view = window.views[0]
    assert settle(window, 30)
    centre = QPoint(view.width() // 2, view.height() // 2)
    QTest.mouseClick(view, Qt.MouseButton.LeftButton, pos=centre)
    QTest.mouseDClick(view, Qt.MouseButton.LeftButton, pos=centre)
    for _ in range(40):
        app.processEvents(); time.sleep(0.02)
    QTest.mousePress(view, Qt.MouseButton.LeftButton, pos=centre)
    QTest.mouseMove(view, centre + QPoint(30, 10))
    QTest.mouseRelease(view, Qt.MouseButton.LeftButton, pos=centre + QPoint(30, 10))
    for _ in range(40):
        app.processEvents(); time.sleep(0.02)
    assert settle(window, 30)
    shot = app.primaryScreen().grabWindow(0)
    shot.save(sys.argv[2])
    image = shot.toImage()
    origin = view.mapToGlobal(QPoint(0, 0))
    tissue = 0
    samples = 0
    for sx in range(10, view.width() - 10, 9):
        for sy in range(10, view.height() - 10, 9):
            x0, y0 = view.screen_to_level0(sx, sy)
            row, col = int(y0 // 16), int(x0 // 16)
            if 0 <= row < MASK.shape[0] and 0 <= col < MASK.shape[1] and MASK[row, col]:
                c = image.pixelColor(origin.x() + sx, origin.y() + sy)
                samples += 1
                tissue += (c.red() - c.green() > 40) and (c.blue() - c.green() > 30)
    print("tissue samples", samples, "pink", tissue, "ds", view.state.downsample)
    assert samples > 50 and tissue / samples > 0.8
    """
)


def _wait_for_x_socket(server: subprocess.Popen, display: str, seconds: float = 30.0) -> None:
    """Wait until the X server listens on its socket (a loaded machine starts it slowly)."""
    socket = Path(f"/tmp/.X11-unix/X{display.lstrip(':')}")
    end = time.monotonic() + seconds
    while not socket.exists() and server.poll() is None and time.monotonic() < end:
        time.sleep(0.05)
    assert server.poll() is None and socket.exists(), "Xvfb did not start"


@pytest.mark.xvfb
@pytest.mark.skipif(
    not shutil.which("Xvfb") and not os.environ.get("CI"),
    reason="Xvfb is not installed (CI installs it, and there this test must run)",
)
def test_real_window_under_xvfb(case, tmp_path):
    case_dir, _ = case
    free = [n for n in range(99, 140) if not os.path.exists(f"/tmp/.X{n}-lock")]
    display = f":{free[0]}"
    server = subprocess.Popen(
        ["Xvfb", display, "-screen", "0", "1280x1024x24", "-nolisten", "tcp"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for_x_socket(server, display)
        script = tmp_path / "drive.py"
        mask = f"import cv2\nMASK = cv2.imread(r'{case_dir / 'tissue_mask.png'}', 0) > 0\n"
        script.write_text(XVFB_SCRIPT.replace("app = make_app()", mask + "app = make_app()"))
        env = dict(os.environ, DISPLAY=display, QT_QPA_PLATFORM="xcb")
        shot = tmp_path / "xvfb.png"
        result = subprocess.run(
            [sys.executable, str(script), str(case_dir / "he.svs"), str(shot)],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert shot.exists() and "pink" in result.stdout
    finally:
        server.terminate()
        server.wait(timeout=10)
