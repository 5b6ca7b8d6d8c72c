"""Sessions keep each pane's display settings: levels, stain view, image type, pixel size."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

pytest.importorskip("PySide6")


from her2viewer.gui.app import settle  # noqa: E402
from her2viewer.overlay.display import REFERENCE_MATRICES, DisplaySettings  # noqa: E402
from her2viewer.session import (  # noqa: E402
    DisplayModel,
    PaneModel,
    Session,
    load_session,
    save_session,
    session_path,
)
from her2viewer.slide.settings import load_settings, settings_path  # noqa: E402


def _typed(window, qtbot) -> None:
    """Wait until every pane's image type is known (guessed from its overview)."""
    for view, slide in zip(window.views, window.slides, strict=True):
        if slide is not None:
            qtbot.waitUntil(
                lambda v=view: window.display_panel.image_type_of(v) is not None, timeout=15000
            )


def _close(window) -> None:
    """Close ``window`` saving its session, once no tile request is on its way (the loader
    is shared with the next window, which would hear of reads of the closed slides)."""
    assert settle(window, 30)
    window.sessions.autosave = True
    window.close()


def _restored(window_factory, qtbot):
    again = window_factory()
    opening = again.sessions.restore()
    assert opening is not None and opening.wait()
    _typed(again, qtbot)
    return again


def _choose(combo, data) -> None:
    """Pick ``data`` in a dock's combo box as a click does."""
    index = combo.findData(data)
    combo.setCurrentIndex(index)
    combo.activated.emit(index)


def _sliders(panel) -> dict[str, int]:
    return {name: slider.value() for name, slider in panel.sliders.items()}


def test_levels_and_stain_views_come_back_after_a_restart(window_factory, synthetic_case, qtbot):
    window = window_factory()
    assert window.open_slides([synthetic_case / "he.svs", synthetic_case / "ihc.svs"]).wait()
    _typed(window, qtbot)
    panel = window.display_panel
    he, ihc = window.views[:2]
    window.set_active(he)
    panel.sliders["Brightness"].setValue(30)
    panel.sliders["Contrast"].setValue(20)
    window.set_active(ihc)
    qtbot.waitUntil(lambda: panel.estimated_matrix(ihc) is not None, timeout=15000)
    _choose(panel.stain, "dab")
    panel.grey.setChecked(True)
    panel.sliders["Gamma"].setValue(-25)
    shown = [he.display, ihc.display]
    assert ihc.display.stain == "dab" and ihc.display.grey and not he.display.neutral
    sliders = _sliders(panel)
    _close(window)
    saved = json.loads(session_path().read_text())
    assert saved["version"] == 2 and saved["panes"][1]["display"]["stain"] == "dab"

    again = _restored(window_factory, qtbot)
    assert [view.display for view in again.views[:2]] == shown
    panel = again.display_panel
    again.set_active(again.views[1])  # the Display dock shows them
    assert panel.stain.currentData() == "dab" and panel.grey.isChecked()
    assert _sliders(panel) == sliders
    again.set_active(again.views[0])
    assert panel.stain.currentData() is None and panel.sliders["Brightness"].value() == 30


def test_image_type_and_pixel_size_come_back_with_the_session(window_factory, qtbot, tmp_path):
    """Even where the slide's own settings are gone (a project's session on another machine)."""
    image = np.full((1500, 2000, 3), 30, np.uint8)
    image[400:1100, 500:1500] = np.random.default_rng(0).integers(60, 200, (700, 1000, 3))
    path = tmp_path / "no_mpp.png"
    cv2.imwrite(str(path), image)
    window = window_factory()
    assert window.open_slides([path]).wait()
    _typed(window, qtbot)
    panel, view = window.display_panel, window.views[0]
    _choose(panel.image_type, "brightfield-he")
    panel.set_pixel_size(0.5)
    panel.sliders["Brightness"].setValue(-40)
    shown = view.display
    fingerprint = view.slide.info.fingerprint
    _close(window)
    settings_path(fingerprint).unlink()

    again = _restored(window_factory, qtbot)
    view, panel = again.views[0], again.display_panel
    assert panel.image_type_of(view) == "brightfield-he" and view.display == shown
    assert view.slide.info.mpp_x == 0.5 and view.slide.info.mpp_set_by_user
    assert load_settings(fingerprint).mpp == 0.5  # stored with the slide again
    assert panel.image_type.currentData() == "brightfield-he"
    assert "set by user" in panel.mpp_note.text()


def test_a_session_saved_before_display_settings_still_loads(window_factory, synthetic_case, qtbot):
    he = str((synthetic_case / "he.svs").resolve())
    version_1 = {
        "version": 1,
        "panes": [{"slide": he, "view": {"cx": 1200.0, "cy": 900.0, "downsample": 4.0}}],
    }
    session_path().parent.mkdir(parents=True)
    session_path().write_text(json.dumps(version_1))
    again = _restored(window_factory, qtbot)
    view = again.views[0]
    assert (view.state.cx, view.state.cy, view.state.downsample) == pytest.approx((1200, 900, 4))
    assert view.display == DisplaySettings() and again.errors == []


def test_bad_display_values_are_one_sentence_and_nothing_else_is_lost(
    window_factory, synthetic_case, qtbot
):
    window = window_factory()
    assert window.open_slides([synthetic_case / "he.svs", synthetic_case / "ihc.svs"]).wait()
    _typed(window, qtbot)
    window.set_active(window.views[0])
    window.display_panel.sliders["Brightness"].setValue(30)
    window.views[1].zoom_at(2.0)
    shown, state = window.views[0].display, window.views[1].state
    _close(window)
    saved = json.loads(session_path().read_text())
    saved["panes"][1]["display"]["levels"][0] = {"black": 200.0, "white": 100.0, "gamma": 1.0}
    session_path().write_text(json.dumps(saved))

    again = _restored(window_factory, qtbot)
    message = again.statusBar().currentMessage()
    assert "pane 2's display" in message and "the defaults are used" in message
    assert message.count(".") >= 1 and "\n" not in message and again.errors == []
    assert again.views[0].display == shown and again.views[1].display == DisplaySettings()
    assert again.views[1].state.downsample == pytest.approx(state.downsample)


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"matrix": [[1, 0, 0], [1, 0, 0], [0, 0, 1]]}, "invertible 3x3 stain matrix"),
        ({"stain": "eosin"}, "not a stain of image type brightfield-hdab"),
        ({"image_type": "xray"}, "must be one of"),
        ({"mpp": 0.0}, "field 'mpp'"),
        ({"levels": [{"gamma": -1.0}] * 3}, "field 'levels.0.gamma'"),
    ],
)
def test_each_unusable_display_value_is_one_sentence_naming_the_file(change, fragment):
    """Qt-free: the reader drops only that pane's display settings and says why."""
    display = DisplayModel.of(
        DisplaySettings().with_stain("dab", REFERENCE_MATRICES["brightfield-hdab"]),
        "brightfield-hdab",
    )
    session = Session(panes=[PaneModel(slide="/s/he.svs"), PaneModel(slide="/s/ihc.svs")])
    path = save_session(session, session_path())
    saved = json.loads(path.read_text())
    saved["panes"][1]["display"] = {**display.model_dump(), **change}
    saved["panes"][1]["sync"] = False
    path.write_text(json.dumps(saved))
    loaded = load_session(path)
    (notice,) = loaded.notices
    assert notice.startswith(f"{path}: pane 2's display") and fragment in notice
    assert notice.endswith("the defaults are used.") and "\n" not in notice
    assert loaded.panes[1].display is None and loaded.panes[1].sync is False
