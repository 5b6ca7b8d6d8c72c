"""The radiology pane: a CT/MR volume slice by slice, its ROI outlined, and the HER2 prediction.

``attach_radiology_panel(window)`` turns the main window's centre into two tabs,
*Slides* (the slide panes) and *Radiology* (a :class:`RadiologyPanel`), and adds
*File > Open CT/MR volume…*. The volume and mask are read, and the radiomic features
extracted and classified, in background jobs (:class:`RadiomicsJobPanel`), so the GUI
never waits on the disk or the extractor. The mouse wheel and the Up/Down and
Page Up/Down keys step through slices (Ctrl + wheel or right-drag zooms, left-drag
pans); the histogram beside the image and the window presets (soft tissue, lung,
bone, auto) set the display range.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QEvent, Qt, Signal
from PySide6.QtGui import QAction, QFont
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSlider,
    QSplitter,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from her2viewer.gui.her2net_panel import PercentBar
from her2viewer.gui.job_panel import JobPanel
from her2viewer.radiomics.display import (
    AUTO,
    PRESET_NAMES,
    default_preset,
    largest_roi_slice,
    looks_like_ct,
    outline_segments,
    window_range,
)
from her2viewer.radiomics.features import check_roi
from her2viewer.radiomics.model import MODEL_NAMES, load_models
from her2viewer.radiomics.optional import missing_message, missing_modules
from her2viewer.radiomics.predict import Prediction, predict_case
from her2viewer.radiomics.volume import Volume, load_volume

OUTLINE_COLOR = (255, 196, 0)
POSITIVE_COLOR = (255, 140, 60)
NEGATIVE_COLOR = (120, 190, 255)
VOLUME_SUFFIXES = (".nrrd", ".nhdr", ".nii", ".nii.gz")
ROI_LABEL = 1
SLICE_KEYS = {Qt.Key.Key_Up: 1, Qt.Key.Key_Down: -1, Qt.Key.Key_PageUp: 5, Qt.Key.Key_PageDown: -5}


@dataclass
class LoadedCase:
    """A volume, its optional ROI and what the display needs, prepared off the GUI thread.

    Attributes
    ----------
    image, mask : Volume
        The volume and its ROI mask (None without one).
    image_path, mask_path : Path
        Where they came from.
    roi : numpy.ndarray or None
        Boolean ROI (mask == :data:`ROI_LABEL`).
    ct : bool
        Whether the values look like Hounsfield units.
    preset : str
        Window preset to start with.
    auto_window, value_range : (float, float)
        The ``auto`` window and the lowest and highest value.
    """

    image: Volume
    mask: Volume | None
    image_path: Path
    mask_path: Path | None
    roi: np.ndarray | None
    ct: bool
    preset: str
    auto_window: tuple[float, float]
    value_range: tuple[float, float]


def read_case(image_path: str | Path, mask_path: str | Path | None = None) -> LoadedCase:
    """Read a volume (file or DICOM folder) and its mask, checking that they match.

    A file that is not NRRD or NIfTI is taken as one slice of a DICOM series and its
    folder is read.

    Raises
    ------
    RadiomicsError
        When a file cannot be read, or the mask does not fit the volume.
    """
    path = Path(image_path)
    if path.is_file() and not path.name.lower().endswith(VOLUME_SUFFIXES):
        path = path.parent
    image = load_volume(path)
    mask = load_volume(mask_path) if mask_path else None
    roi = None if mask is None else check_roi(image, mask, ROI_LABEL)
    array = image.array
    return LoadedCase(
        image,
        mask,
        path,
        Path(mask_path) if mask_path else None,
        roi,
        looks_like_ct(array),
        default_preset(array),
        window_range(AUTO, array),
        (float(array.min()), float(array.max())),
    )


class SliceViewBox(pg.ViewBox):
    """A view box whose mouse wheel steps through slices; Ctrl + wheel zooms."""

    slice_step = Signal(int)

    def wheelEvent(self, ev, axis=None) -> None:  # noqa: N802 - Qt override
        if ev.modifiers() & Qt.KeyboardModifier.ControlModifier:
            super().wheelEvent(ev, axis)
            return
        self.slice_step.emit(1 if ev.delta() > 0 else -1)
        ev.accept()


class RadiomicsJobPanel(JobPanel):
    """The side column: case facts, window, cursor, model and the HER2 prediction."""

    def __init__(self, window, viewer: RadiologyPanel) -> None:
        super().__init__(window, "Predict HER2")
        self.viewer = viewer
        self.model_path: Path | None = None
        self.prediction: Prediction | None = None
        self.hint = QLabel()
        self.hint.setWordWrap(True)
        self.hint.setStyleSheet("color: rgb(255, 196, 0);")
        missing = missing_modules()
        self.hint.setText(missing_message(missing) if missing else "")
        self.hint.setVisible(bool(missing))
        self.facts = QLabel("No volume open: File > Open CT/MR volume…")
        self.facts.setWordWrap(True)
        self.facts.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.preset = QComboBox()
        self.preset.addItems(PRESET_NAMES)
        self.slice_label = QLabel("–")
        self.readout = QLabel("–")
        self.readout.setFont(QFont("monospace"))
        self.model_label = QLabel("none")
        self.model_label.setWordWrap(True)
        choose = QPushButton("Choose model…")
        choose.setToolTip("Choose the radiomics model file that predicts HER2 from the volume")
        choose.clicked.connect(self.choose_model)
        self.classifier = QComboBox()
        self.classifier.addItems(MODEL_NAMES)
        self.result = QLabel("")
        self.result.setWordWrap(True)
        big = self.result.font()
        big.setPointSizeF(big.pointSizeF() * 1.4)
        big.setBold(True)
        self.result.setFont(big)
        self.bar = PercentBar()
        self.body.insertWidget(0, self.hint)
        prediction = QVBoxLayout()
        prediction.addWidget(self.result)
        prediction.addWidget(self.bar)
        self.body.insertWidget(1, _group("HER2 prediction", prediction))
        self.body.addWidget(_group("Case", self.facts))
        display = QFormLayout()
        display.addRow("Window", self.preset)
        display.addRow("Slice", self.slice_label)
        display.addRow("Cursor", self.readout)
        self.body.addWidget(_group("Display", display))
        model = QFormLayout()
        model.addRow("File", self.model_label)
        model.addRow("", choose)
        model.addRow("Classifier", self.classifier)
        self.body.addWidget(_group("Radiomics model", model))
        self.body.addStretch(1)
        self.show_prediction(None)

    def set_model(self, path: str | Path | None) -> None:
        """Use this radiomics model (JSON from ``radiomics train``) for the next prediction."""
        self.model_path = Path(path) if path else None
        self.model_label.setText(self.model_path.name if self.model_path else "none")
        self.model_label.setToolTip(str(self.model_path or ""))

    def choose_model(self) -> None:
        """Ask for a model file and predict with it."""
        path, _ = QFileDialog.getOpenFileName(
            self, "Radiomics model", "", "Radiomics model (*.json);;All files (*)"
        )
        if path:
            self.set_model(path)
            self.run()

    def load(self, image_path: str | Path, mask_path: str | Path | None) -> None:
        """Read the volume and mask in the background, then show them."""
        self.cancel()
        self.show_prediction(None)
        self.start(lambda context: read_case(image_path, mask_path), "volume", "Reading volume…")

    def run(self) -> None:
        """Extract the model's features and classify the open case in the background."""
        case = self.viewer.case
        if case is None or case.mask is None:
            self.window.show_error("Open a CT/MR volume with its ROI mask first.")
            return
        if self.model_path is None:
            self.window.show_error(
                "Choose a radiomics model (the JSON written by 'her2viewer radiomics train')."
            )
            return
        model, classifier = self.model_path, self.classifier.currentText()

        def work(context):
            return predict_case(
                load_models(model), case.image, case.mask, classifier, None, context
            )

        self.show_prediction(None)
        self.start(work, "radiomics", "Extracting radiomic features…")

    def show_result(self, result) -> None:
        """Show a read case (then predict when a model is set) or a prediction."""
        if isinstance(result, LoadedCase):
            self.viewer.show_case(result)
            self.status.setText(f"Opened {result.image_path.name}.")
            if self.model_path is not None and result.mask is not None:
                self.run()
            return
        self.show_prediction(result)

    def show_prediction(self, prediction: Prediction | None) -> None:
        """Show a prediction's class and probability (or clear them)."""
        self.prediction = prediction
        self.bar.setVisible(prediction is not None)
        if prediction is None:
            self.result.setText("–")
            self.result.setStyleSheet("")
            return
        positive = prediction.classes[1]
        color = POSITIVE_COLOR if prediction.label == positive else NEGATIVE_COLOR
        self.result.setStyleSheet(f"color: rgb{color};")
        self.result.setText(
            f"HER2 {prediction.label}\np({positive}) = {prediction.probability:.2f}"
        )
        self.bar.set_value(100 * prediction.probability, 50)
        self.status.setText(
            f"{prediction.classifier.replace('_', ' ')} on the radiomic features of the ROI."
        )


def _group(title: str, content) -> QGroupBox:
    box = QGroupBox(title)
    if isinstance(content, QWidget):
        layout = QVBoxLayout(box)
        layout.addWidget(content)
    else:
        box.setLayout(content)
    return box


class RadiologyPanel(QWidget):
    """A CT/MR volume slice by slice with the ROI outlined, beside :class:`RadiomicsJobPanel`.

    Parameters
    ----------
    window : MainWindow
        Shows errors; its File menu gets the open action (see :func:`attach_radiology_panel`).
    model : str or Path, optional
        Radiomics model JSON to predict with after a case is opened.
    """

    slice_changed = Signal(int)

    def __init__(self, window, model: str | Path | None = None) -> None:
        super().__init__()
        self.window = window
        self.case: LoadedCase | None = None
        self.roi: np.ndarray | None = None
        self.index = 0
        self.tabs: QTabWidget | None = None
        self.open_action: QAction | None = None
        self.view_box = SliceViewBox()
        self.image_view = pg.ImageView(view=self.view_box)
        for widget in (self.image_view.ui.roiBtn, self.image_view.ui.menuBtn):
            widget.hide()
        self.image_view.ui.roiPlot.hide()
        self.outline = pg.PlotCurveItem(connect="pairs", pen=pg.mkPen(OUTLINE_COLOR, width=2))
        self.view_box.addItem(self.outline)
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setEnabled(False)
        self.title = QLabel("")
        self.title.setContentsMargins(8, 4, 8, 4)
        self.position = QLabel("")
        self.side = RadiomicsJobPanel(window, self)
        self.side.set_model(model)
        image_area = QWidget()
        column = QVBoxLayout(image_area)
        column.setContentsMargins(0, 0, 0, 0)
        column.addWidget(self.title)
        column.addWidget(self.image_view, 1)
        slider_row = QHBoxLayout()
        slider_row.setContentsMargins(8, 0, 8, 4)
        slider_row.addWidget(QLabel("Slice"))
        slider_row.addWidget(self.slider, 1)
        slider_row.addWidget(self.position)
        column.addLayout(slider_row)
        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(image_area)
        splitter.addWidget(self.side)
        splitter.setStretchFactor(0, 1)
        splitter.setSizes([900, 320])
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(splitter)
        self.slider.valueChanged.connect(self.set_slice)
        self.view_box.slice_step.connect(lambda step: self.set_slice(self.index + step))
        self.side.preset.currentTextChanged.connect(self.set_preset)
        self.image_view.scene.sigMouseMoved.connect(self._on_mouse)
        self.image_view.ui.graphicsView.installEventFilter(self)

    def eventFilter(self, watched, event) -> bool:  # noqa: N802 - Qt override
        """Up/Down step one slice and Page Up/Down five, as the wheel does."""
        step = SLICE_KEYS.get(event.key()) if event.type() == QEvent.Type.KeyPress else None
        if step is None:
            return super().eventFilter(watched, event)
        self.set_slice(self.index + step)
        return True

    @property
    def job(self):
        """The running background job (reading or predicting), if any."""
        return self.side.job

    def open_case(
        self,
        image_path: str | Path,
        mask_path: str | Path | None = None,
        model: str | Path | None = None,
    ) -> None:
        """Read a volume (and ROI mask) in the background and show it; predict with ``model``."""
        if model is not None:
            self.side.set_model(model)
        self.side.load(image_path, mask_path)

    def show_case(self, case: LoadedCase) -> None:
        """Display a read case at its largest ROI slice (the middle one without a mask)."""
        self.case = case
        array = case.image.array
        self.roi = case.roi
        self.index = -1
        self.slider.setRange(0, array.shape[0] - 1)
        self.slider.setEnabled(True)
        self.title.setText(
            f"<b>{case.image_path.name}</b>"
            + (f" &nbsp;·&nbsp; ROI {case.mask_path.name}" if case.mask_path else "")
        )
        self.side.facts.setText(self._facts(case))
        start = largest_roi_slice(self.roi) if self.roi is not None else array.shape[0] // 2
        self.set_slice(start, auto_range=True)
        self.side.preset.setCurrentText(case.preset)
        self.set_preset(self.side.preset.currentText())

    def set_slice(self, index: int, auto_range: bool = False) -> None:
        """Show slice ``index`` (clamped) with the ROI outline of that slice."""
        if self.case is None:
            return
        array = self.case.image.array
        index = int(np.clip(index, 0, array.shape[0] - 1))
        if index == self.index:
            return
        self.index = index
        dz, dy, dx = self.case.image.spacing
        levels = self.image_view.getImageItem().levels
        self.image_view.setImage(
            array[index].T,
            autoRange=auto_range,
            autoLevels=False,
            levels=self.case.auto_window if levels is None else levels,
            scale=(dx, dy),
            autoHistogramRange=False,
        )
        segments = (
            outline_segments(self.roi[index]) if self.roi is not None else np.zeros((0, 2, 2))
        )
        self.outline.setData(segments[..., 0].ravel() * dx, segments[..., 1].ravel() * dy)
        self.slider.blockSignals(True)
        self.slider.setValue(index)
        self.slider.blockSignals(False)
        self.position.setText(f"{index + 1} / {array.shape[0]}")
        roi_here = self.roi is not None and bool(self.roi[index].any())
        self.side.slice_label.setText(
            f"{index + 1} / {array.shape[0]}  ({index * dz:.1f} mm)"
            + ("  · ROI" if roi_here else "")
        )
        self.slice_changed.emit(index)

    def set_preset(self, preset: str) -> None:
        """Apply a window preset (soft tissue, lung, bone or auto)."""
        if self.case is None or preset not in PRESET_NAMES:
            return
        low, high = self.case.auto_window if preset == AUTO else window_range(preset, None)
        self.image_view.setLevels(low, high)
        self.image_view.getHistogramWidget().setHistogramRange(
            min(low, self.case.value_range[0]), max(high, self.case.value_range[1])
        )

    def levels(self) -> tuple[float, float]:
        """The current display range."""
        low, high = self.image_view.getImageItem().levels
        return float(low), float(high)

    def voxel_at(self, x_mm: float, y_mm: float) -> tuple[int, int] | None:
        """(row, column) of the current slice under view coordinates in mm, if inside."""
        if self.case is None:
            return None
        _, dy, dx = self.case.image.spacing
        row, col = int(np.floor(y_mm / dy)), int(np.floor(x_mm / dx))
        rows, cols = self.case.image.array.shape[1:]
        return (row, col) if 0 <= row < rows and 0 <= col < cols else None

    def readout(self, row: int, col: int) -> str:
        """The cursor line: voxel position, value (HU for CT) and ROI membership."""
        array = self.case.image.array
        value = array[self.index, row, col]
        unit = " HU" if self.case.ct else ""
        in_roi = "  ROI" if self.roi is not None and self.roi[self.index, row, col] else ""
        return f"x {col}  y {row}  z {self.index}:  {value:g}{unit}{in_roi}"

    def _on_mouse(self, scene_pos) -> None:
        point = self.view_box.mapSceneToView(scene_pos)
        voxel = self.voxel_at(point.x(), point.y())
        self.side.readout.setText(self.readout(*voxel) if voxel else "–")

    def summary(self) -> str:
        """One line for the command line: case, slice, window and the prediction."""
        if self.case is None:
            return "no volume open"
        z, y, x = self.case.image.array.shape
        low, high = self.levels()
        text = (
            f"{self.case.image_path.name}: {x} x {y} x {z} voxels, slice {self.index + 1}/{z}, "
            f"window {self.side.preset.currentText()} [{low:g}, {high:g}]"
        )
        prediction = self.side.prediction
        if prediction is not None:
            text += (
                f"; HER2 {prediction.label}, p({prediction.classes[1]}) = "
                f"{prediction.probability:.3f} ({prediction.classifier})"
            )
        elif self.side.model_path is not None:
            text += f"; {self.side.status.text()}"
        return text

    @staticmethod
    def _facts(case: LoadedCase) -> str:
        z, y, x = case.image.array.shape
        dz, dy, dx = case.image.spacing
        lines = [
            f"{x} × {y} × {z} voxels",
            f"{dx:.2f} × {dy:.2f} × {dz:.2f} mm",
            "CT (Hounsfield units)" if case.ct else "MR / other intensities",
        ]
        if case.mask is not None:
            count = int(case.roi.sum())
            lines.append(f"ROI: {count} voxels, {count * case.image.voxel_volume / 1000:.2f} mL")
        else:
            lines.append("No ROI mask: open one to predict.")
        return "\n".join(lines)


def attach_radiology_panel(window, model: str | Path | None = None) -> RadiologyPanel:
    """Add the Radiology tab and *File > Open CT/MR volume…* to ``window``; return the panel."""
    panel = RadiologyPanel(window, model)
    panel.tabs = window.add_page(panel, "Radiology")
    panel.open_action = window.add_file_action(
        "Open CT/MR &volume…",
        lambda: open_volume_dialog(window, panel),
        "Open a CT or MR volume (and its tumour mask) in the Radiology tab",
    )
    return panel


def show_radiology(panel: RadiologyPanel) -> None:
    """Bring the Radiology tab to the front."""
    panel.tabs.setCurrentWidget(panel)


def open_volume_dialog(window, panel: RadiologyPanel) -> None:
    """Ask for a volume (NRRD, NIfTI or a file of a DICOM series) and an optional ROI mask."""
    patterns = "Volumes (*.nrrd *.nhdr *.nii *.nii.gz *.dcm);;All files (*)"
    image, _ = QFileDialog.getOpenFileName(window, "Open CT/MR volume", "", patterns)
    if not image:
        return
    mask, _ = QFileDialog.getOpenFileName(
        window, "Open its ROI mask (cancel for none)", str(Path(image).parent), patterns
    )
    show_radiology(panel)
    panel.open_case(image, mask or None)
