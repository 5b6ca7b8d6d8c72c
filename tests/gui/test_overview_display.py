"""The overview (minimap, the pane's placeholders, the magnifier's backdrop) is drawn as the
pane draws its tiles: the Display dock's levels and stain views, made on the tile workers."""

import threading

import cv2
import numpy as np
import pytest

pytest.importorskip("PySide6")

from PySide6.QtCore import QPointF  # noqa: E402

from her2viewer.gui import slideview  # noqa: E402
from her2viewer.gui.magnifier import RADIUS, Magnifier  # noqa: E402
from her2viewer.overlay import HeatmapLayer  # noqa: E402
from her2viewer.overlay.display import DisplaySettings, Levels, apply_display  # noqa: E402
from her2viewer.slide.base import Slide  # noqa: E402
from her2viewer.stain.deconvolution import HDAB  # noqa: E402

DAB = DisplaySettings().with_stain("dab", HDAB)
DARKER = DAB.with_levels(Levels.from_brightness_contrast(-0.4, 1.5))
#: Most a drawn picture's mean colour may differ from the display applied to the overview.
MEAN_TOLERANCE = 4.0


@pytest.fixture()
def gui_thread_reads(monkeypatch):
    """Whether each slide read (a region, or the overview's thumbnail) ran on the GUI thread."""
    calls = []
    for name in ("read_region", "thumbnail"):
        original = getattr(Slide, name)

        def hooked(self, *args, _original=original, **kwargs):
            calls.append(threading.current_thread() is threading.main_thread())
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(Slide, name, hooked)
    return calls


def _pixels(widget) -> np.ndarray:
    image = widget.grab().toImage().convertToFormat(widget.grab().toImage().Format.Format_RGB888)
    w, h = image.width(), image.height()
    rows = np.frombuffer(image.constBits(), np.uint8).reshape(h, image.bytesPerLine())
    return rows[:, : w * 3].reshape(h, w, 3).astype(np.float64)


def _inside(pixels: np.ndarray, x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    """The pixels well inside a box (away from its edges and any outline drawn on them)."""
    return pixels[int(y0) + 4 : int(y1) - 4, int(x0) + 4 : int(x1) - 4].reshape(-1, 3)


def _minimap_slide(window) -> np.ndarray:
    rect = window.minimap._image_rect()
    return _inside(_pixels(window.minimap), rect.left(), rect.top(), rect.right(), rect.bottom())


def _pane_slide(view) -> np.ndarray:
    x0, y0 = view.level0_to_screen(0, 0)
    x1, y1 = view.level0_to_screen(view.slide.info.width, view.slide.info.height)
    return _inside(_pixels(view), x0, y0, x1, y1)


def _raw_overview(view) -> np.ndarray:
    return cv2.cvtColor(view.overview.array, cv2.COLOR_BGRA2RGB)


def _expected_mean(view, display: DisplaySettings) -> np.ndarray:
    """The mean colour of the display function applied to the raw overview."""
    return apply_display(_raw_overview(view), display).reshape(-1, 3).mean(axis=0)


def _dab_aligned(pixels: np.ndarray) -> float:
    """The 5th percentile of how well stained pixels' optical densities point along DAB."""
    od = -np.log10(np.maximum(pixels, 1) / 255.0)
    stained = od[od.sum(axis=1) > 0.3]
    assert len(stained) > 100
    direction = stained / np.linalg.norm(stained, axis=1, keepdims=True)
    return float(np.percentile(direction @ np.array(HDAB[1]), 5))


def _open_ihc(window, case, qtbot):
    assert window.open_in_pane(case / "ihc.svs", 0).wait()
    view = window.views[0]
    view.show_hud = False
    # the Display dock guesses the image type from the raw overview (and resets stain views)
    qtbot.waitUntil(lambda: window.display_panel.image_type_of(view) is not None, timeout=20000)
    return view


def _drawn(view, qtbot):
    """Wait until the pane, its overview included, is drawn as it is set now."""
    qtbot.waitUntil(lambda: view.fully_loaded() and view.loader.pending() == 0, timeout=20000)


def _shown(view, qtbot, display: DisplaySettings):
    """Set ``display`` and wait until the pane, its overview included, is drawn with it."""
    view.set_display(display)
    _drawn(view, qtbot)


def test_the_minimap_follows_the_stain_view_and_levels(
    panel_window, synthetic_case, qtbot, gui_thread_reads
):
    window = panel_window
    view = _open_ihc(window, synthetic_case, qtbot)
    qtbot.waitUntil(view.fully_loaded, timeout=20000)
    raw = _minimap_slide(window)
    raw_overview = view.overview
    assert _dab_aligned(raw) < 0.9  # the raw slide: haematoxylin blue and DAB brown

    view.set_display(DAB)  # asked of the workers: the raw overview stands in, never white
    assert view.displayed_overview is raw_overview
    assert np.array_equal(_minimap_slide(window), raw)
    qtbot.waitUntil(lambda: view.displayed_overview is not raw_overview, timeout=20000)
    _shown(view, qtbot, DAB)
    dab = _minimap_slide(window)
    assert np.abs(dab.mean(axis=0) - _expected_mean(view, DAB)).max() < MEAN_TOLERANCE
    assert np.abs(raw.mean(axis=0) - _expected_mean(view, DAB)).max() > 3 * MEAN_TOLERANCE
    assert _dab_aligned(dab) > 0.97  # every stained pixel: DAB's one colour
    dab_overview = view.displayed_overview

    view.set_display(DARKER)  # the DAB overview stands in for the darker one meanwhile
    assert view.displayed_overview is dab_overview
    _shown(view, qtbot, DARKER)
    darker = _minimap_slide(window)
    assert np.abs(darker.mean(axis=0) - _expected_mean(view, DARKER)).max() < MEAN_TOLERANCE
    assert darker.mean() < dab.mean() - 4 * MEAN_TOLERANCE

    _shown(view, qtbot, DisplaySettings())  # neutral: exactly the raw overview
    assert view.displayed_overview is view.overview
    assert np.array_equal(_minimap_slide(window), raw)
    assert gui_thread_reads and not any(gui_thread_reads)  # every read on a worker


def test_the_pane_and_lens_draw_the_displayed_overview_while_tiles_load(
    panel_window, synthetic_case, qtbot, monkeypatch, gui_thread_reads
):
    def held_back(*_args):
        raise OSError("tile held back by the test")

    monkeypatch.setattr(slideview, "read_virtual_tile", held_back)  # only the overview loads
    window = panel_window
    view = _open_ihc(window, synthetic_case, qtbot)
    raw_overview = view.overview
    raw = _pane_slide(view)
    assert np.abs(raw.mean(axis=0) - _raw_overview(view).reshape(-1, 3).mean(axis=0)).max() < 4

    view.set_display(DAB)
    qtbot.waitUntil(lambda: view.displayed_overview is not raw_overview, timeout=20000)
    drawn = _pane_slide(view)
    assert np.abs(drawn.mean(axis=0) - _expected_mean(view, DAB)).max() < MEAN_TOLERANCE
    assert np.abs(raw.mean(axis=0) - _expected_mean(view, DAB)).max() > 3 * MEAN_TOLERANCE
    assert _dab_aligned(drawn) > 0.97
    assert not view.fully_loaded()  # no tile came: every place was the overview's

    lens = next(p for p in view.vector_painters if isinstance(p, Magnifier))
    centre = QPointF(view.width() / 2, view.height() / 2)
    lens.show_at(centre)
    half = int(RADIUS * 0.6)
    cx, cy = int(centre.x()), int(centre.y())
    inside = _pixels(view)[cy - half : cy + half, cx - half : cx + half].reshape(-1, 3)
    lens.hide()
    assert _dab_aligned(inside) > 0.97  # the lens's backdrop: the DAB overview too
    assert gui_thread_reads and not any(gui_thread_reads)


def test_the_minimap_shows_the_layers_the_tiles_blend_in(panel_window, synthetic_case, qtbot):
    window = panel_window
    view = _open_ihc(window, synthetic_case, qtbot)
    qtbot.waitUntil(view.fully_loaded, timeout=20000)
    raw = _minimap_slide(window)
    info = view.slide.info
    layer = HeatmapLayer("score", values=np.ones((8, 10), np.float32), downsample=375)
    view.add_layer(layer)
    _drawn(view, qtbot)
    rgba = layer.render((0, 0, info.width, info.height), view.overview.array.shape[1::-1])
    weight = rgba[..., 3:].astype(np.float64) / 255 * layer.opacity
    blended = _raw_overview(view) * (1 - weight) + rgba[..., :3] * weight
    expected = blended.reshape(-1, 3).mean(axis=0)
    assert np.abs(_minimap_slide(window).mean(axis=0) - expected).max() < MEAN_TOLERANCE
    assert np.abs(raw.mean(axis=0) - expected).max() > 3 * MEAN_TOLERANCE

    view.overlays_shown = False  # O: every layer hidden, the minimap's too
    view.refresh()
    assert view.displayed_overview is view.overview
    assert np.array_equal(_minimap_slide(window), raw)


def test_raw_slide_tiles_never_stand_in_for_a_stain_view(
    panel_window, synthetic_case, qtbot, monkeypatch
):
    window = panel_window
    view = _open_ihc(window, synthetic_case, qtbot)
    qtbot.waitUntil(view.fully_loaded, timeout=20000)  # the raw tiles of the view are cached
    original = slideview.display_tile

    def overview_only(base, display):
        if base is not view.overview:
            raise OSError("tile held back by the test")
        return original(base, display)

    monkeypatch.setattr(slideview, "display_tile", overview_only)
    raw_overview = view.overview
    view.set_display(DAB)
    qtbot.waitUntil(lambda: view.displayed_overview is not raw_overview, timeout=20000)
    assert not view.fully_loaded()  # no DAB tile came: every place is a stand-in
    assert _dab_aligned(_pane_slide(view)) > 0.97  # the DAB overview, not raw slide tiles
