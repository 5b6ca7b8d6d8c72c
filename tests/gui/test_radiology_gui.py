"""The radiology pane: breast1 slice by slice, ROI outline, window presets, prediction, errors."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDockWidget, QToolBar

from her2viewer.cli import main as cli_main
from her2viewer.gui.radiology_panel import attach_radiology_panel, read_case, show_radiology
from her2viewer.radiomics.display import outline_segments
from her2viewer.radiomics.optional import INSTALL_HINT
from her2viewer.radiomics.predict import predict_case
from her2viewer.radiomics.volume import Volume, load_volume, write_nrrd

DATA = Path(__file__).resolve().parents[1] / "data" / "radiomics"
IMAGE, MASK = DATA / "breast1_image.nrrd", DATA / "breast1_label.nrrd"


@pytest.fixture()
def window(panel_window):
    return panel_window


def _opened(window, qtbot, mask=MASK, model=None):
    panel = attach_radiology_panel(window)
    show_radiology(panel)
    panel.open_case(IMAGE, mask, model)
    qtbot.waitUntil(lambda: panel.case is not None, timeout=30_000)
    return panel


class _Wheel:
    """Just enough of a QGraphicsSceneWheelEvent for SliceViewBox.wheelEvent."""

    def __init__(self, delta: int) -> None:
        self._delta, self.accepted = delta, False

    def modifiers(self):
        return Qt.KeyboardModifier.NoModifier

    def delta(self) -> int:
        return self._delta

    def accept(self) -> None:
        self.accepted = True


def test_breast1_slices_outline_and_cursor(window, qtbot):
    panel = _opened(window, qtbot)
    roi = load_volume(MASK).array == 1
    areas = roi.sum(axis=(1, 2))
    assert panel.index == int(np.argmax(areas))  # opens on the largest ROI slice
    assert panel.slider.maximum() == roi.shape[0] - 1 and panel.slider.value() == panel.index
    x, y = panel.outline.getData()
    segments = outline_segments(roi[panel.index])
    _, dy, dx = load_volume(IMAGE).spacing
    assert len(x) == 2 * len(segments) > 0
    cols, rows = np.nonzero(roi[panel.index].T)
    assert x.min() == pytest.approx(cols.min() * dx) and x.max() == pytest.approx(
        (cols.max() + 1) * dx
    )
    assert y.min() == pytest.approx(rows.min() * dy) and y.max() == pytest.approx(
        (rows.max() + 1) * dy
    )
    assert "ROI" in panel.side.slice_label.text()
    # the slider and the wheel step through slices; no outline where the ROI is absent
    empty = int(np.flatnonzero(areas == 0)[0])
    panel.slider.setValue(empty)
    assert panel.index == empty and len(panel.outline.getData()[0]) == 0
    event = _Wheel(120)
    panel.view_box.wheelEvent(event)
    assert event.accepted and panel.index == empty + 1
    panel.view_box.wheelEvent(_Wheel(-120))
    panel.view_box.wheelEvent(_Wheel(-120))
    assert panel.index == max(empty - 1, 0)
    view = panel.image_view.ui.graphicsView
    start = panel.index
    qtbot.keyClick(view, Qt.Key.Key_PageUp)
    qtbot.keyClick(view, Qt.Key.Key_Down)
    assert panel.index == start + 4
    # cursor readout: view mm -> voxel -> intensity
    image = load_volume(IMAGE).array
    row, col = 60, 20
    assert panel.voxel_at((col + 0.5) * dx, (row + 0.5) * dy) == (row, col)
    assert panel.voxel_at(-1.0, 5.0) is None
    text = panel.readout(row, col)
    assert f"{image[panel.index, row, col]:g}" in text and "HU" not in text  # MR


def test_window_presets_set_the_levels(window, qtbot):
    panel = _opened(window, qtbot)
    assert panel.side.preset.currentText() == "auto"  # MR
    image = load_volume(IMAGE).array
    assert panel.levels() == pytest.approx(tuple(np.percentile(image, [0.5, 99.5])))
    for preset, expected in (
        ("soft tissue", (-160, 240)),
        ("lung", (-1350, 150)),
        ("bone", (-700, 1300)),
    ):
        panel.side.preset.setCurrentText(preset)
        assert panel.levels() == pytest.approx(expected)
    panel.set_slice(panel.index + 1)  # stepping keeps the window
    assert panel.levels() == pytest.approx((-700, 1300))


def test_ct_volume_defaults_to_soft_tissue_and_reads_hu(window, qtbot, tmp_path):
    ct = np.full((4, 16, 16), -1000, np.int16)
    ct[:, 4:12, 4:12] = 40
    path = write_nrrd(tmp_path / "ct.nrrd", Volume(ct, (2.5, 0.7, 0.7)))
    panel = attach_radiology_panel(window)
    panel.open_case(path)
    qtbot.waitUntil(lambda: panel.case is not None, timeout=30_000)
    assert panel.side.preset.currentText() == "soft tissue"
    assert panel.levels() == pytest.approx((-160, 240))
    assert panel.readout(5, 5).endswith("40 HU") and panel.roi is None
    assert len(panel.outline.getData()[0]) == 0


def test_prediction_in_the_background(window, qtbot, radiomics_model):
    panel = _opened(window, qtbot, model=radiomics_model)  # opening with a model predicts
    qtbot.waitUntil(lambda: panel.side.prediction is not None, timeout=60_000)
    prediction = panel.side.prediction
    expected = predict_case(radiomics_model, load_volume(IMAGE), load_volume(MASK))
    assert prediction.probability == pytest.approx(expected.probability)
    assert prediction.label == expected.label
    assert f"HER2 {expected.label}" in panel.side.result.text()
    assert f"{expected.probability:.2f}" in panel.side.result.text()
    assert panel.side.bar.value == pytest.approx(100 * expected.probability)
    assert f"p(positive) = {expected.probability:.3f}" in panel.summary()
    panel.side.classifier.setCurrentText("random_forest")
    panel.side.run()
    assert panel.job is not None  # runs off the GUI thread
    qtbot.waitUntil(lambda: panel.job is None, timeout=60_000)
    assert panel.side.prediction.classifier == "random_forest"


def test_user_errors_are_shown_and_the_pane_keeps_working(window, qtbot, tmp_path):
    panel = attach_radiology_panel(window)
    panel.side.run()
    assert panel.job is None and "Open a CT/MR volume" in window.errors[-1]
    panel.open_case(tmp_path / "missing.nrrd")
    qtbot.waitUntil(lambda: panel.job is None, timeout=30_000)
    assert "Volume file not found" in window.errors[-1] and panel.case is None
    small = write_nrrd(tmp_path / "small.nrrd", Volume(np.ones((2, 3, 4), np.uint8), (1, 1, 1)))
    panel.open_case(IMAGE, small)
    qtbot.waitUntil(lambda: panel.job is None, timeout=30_000)
    assert "does not match image shape" in window.errors[-1]
    panel.open_case(IMAGE, MASK)
    qtbot.waitUntil(lambda: panel.case is not None, timeout=30_000)
    panel.side.run()  # no model chosen
    assert panel.job is None and "radiomics train" in window.errors[-1]


def test_missing_extra_is_explained(window, qtbot, monkeypatch, radiomics_model):
    monkeypatch.setitem(sys.modules, "pywt", None)
    panel = _opened(window, qtbot)  # viewing needs no extra
    assert panel.side.hint.isVisibleTo(panel.side)
    assert INSTALL_HINT in panel.side.hint.text() and "wavelet" in panel.side.hint.text()
    panel.side.set_model(radiomics_model)  # this model needs a wavelet feature
    panel.side.run()
    qtbot.waitUntil(lambda: panel.job is None, timeout=60_000)
    assert INSTALL_HINT in window.errors[-1] and panel.side.prediction is None


def test_tab_menu_and_docks(window):
    bars = window.findChildren(QDockWidget) + window.findChildren(QToolBar)
    docks = [d for d in bars if d.isVisible()]
    panel = attach_radiology_panel(window)
    titles = [a.text() for a in window.menuBar().actions()[0].menu().actions()]
    assert "Open CT/MR &volume…" in titles
    assert [panel.tabs.tabText(i) for i in range(panel.tabs.count())] == ["Slides", "Radiology"]
    show_radiology(panel)
    assert docks and not any(d.isVisible() for d in docks)  # slide docks, toolbar make room
    panel.tabs.setCurrentIndex(0)
    assert all(d.isVisible() for d in docks)


def test_view_cli_renders_the_volume(tmp_path, capsys, radiomics_model):
    out = tmp_path / "radiology.png"
    args = ["view", "--volume", str(IMAGE), "--mask", str(MASK), "--radiomics-model",
            str(radiomics_model), "--screenshot", str(out), "--size", "1200x800"]  # fmt: skip
    assert cli_main(args) == 0
    assert out.stat().st_size > 10_000
    text = capsys.readouterr().out
    assert "Radiology: breast1_image.nrrd" in text and "HER2" in text
    bad = ["view", "--volume", str(tmp_path / "nope.nrrd"), "--screenshot", str(out)]
    assert cli_main(bad) == 2
    assert "Volume file not found" in capsys.readouterr().err


def test_a_dicom_slice_file_opens_its_series(tmp_path, write_dicom_series):
    ct = np.full((3, 8, 8), -1000, np.int16)
    ct[:, 2:6, 2:6] = 60
    write_dicom_series(tmp_path, Volume(ct, (2.0, 0.5, 0.5)))
    case = read_case(sorted(tmp_path.glob("*.dcm"))[0])
    assert case.image_path == tmp_path and case.image.array.shape == (3, 8, 8)
    assert case.ct and case.preset == "soft tissue" and case.roi is None
