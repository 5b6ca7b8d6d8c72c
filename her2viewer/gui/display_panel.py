"""The Display dock: how the active pane draws its slide, and what the slide is.

Brightness, contrast and gamma (per channel for fluorescence), *Reset* and *Auto*
(a percentile stretch of the overview), a stain view (hematoxylin, eosin or DAB alone,
in its colour or grey, deconvolved with the slide's own stain vectors estimated on a
worker), the slide's image type (guessed when its overview arrives, editable, stored)
and a pixel size for files that record none (stored, applied at once). The pixels
themselves are changed on the tile workers (:meth:`SlideView.set_display`). A saved
session puts a pane's settings back through :meth:`DisplayPanel.restore`.
"""

from __future__ import annotations

import math
from dataclasses import replace
from functools import partial

import cv2
import numpy as np
from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSlider,
    QWidget,
)

from her2viewer.analysis.ihc import slide_stain_matrix
from her2viewer.errors import Her2ViewerError, StainError
from her2viewer.gui.tiles import QUEUED, CachedTile, TileKey, TileLoader
from her2viewer.overlay.display import (
    NEUTRAL,
    REFERENCE_MATRICES,
    STAINS,
    Levels,
    auto_levels,
    guess_image_type,
    stain_index,
    stain_view,
)
from her2viewer.slide.settings import (
    IMAGE_TYPES,
    MPP_RANGE,
    apply_pixel_size,
    load_settings,
    save_settings,
)
from her2viewer.stain import HE, estimate_stain_matrix

#: Slider steps per unit: brightness in hundredths; contrast and gamma as log2 steps.
CONTRAST_STEPS_PER_DOUBLING = 25
GAMMA_STEPS_PER_DOUBLING = 50
SLIDER_RANGE = (-100, 100)
#: Side of the thumbnail on which H&E stain vectors are estimated.
ESTIMATE_SIZE = 1024
CHANNELS = ("All channels", "Red", "Green", "Blue")
STAIN_LABELS = {"hematoxylin": "Hematoxylin", "eosin": "Eosin", "dab": "DAB"}
#: Characters a combo box is sized for (longer entries are elided).
COMBO_CHARACTERS = 10
#: Loader priority of a stain estimate: after the tiles in view.
ESTIMATE_PRIORITY = (2, 0.0)


def slide_view_matrix(slide, image_type: str) -> np.ndarray:
    """The slide's stain vectors for a stain view (reads the slide: a worker thread).

    H-DAB as the IHC analysis estimates them (:func:`~her2viewer.analysis.ihc.
    slide_stain_matrix`); H&E by Macenko on a thumbnail, the reference when it fails.
    """
    if image_type == "brightfield-hdab":
        return slide_stain_matrix(slide)
    try:
        return estimate_stain_matrix(slide.thumbnail(ESTIMATE_SIZE), HE, max_deviation=15)
    except StainError:
        return HE


def overview_rgb(view) -> np.ndarray | None:
    """The pane's cached overview as RGB, ``None`` while it loads (never reads the slide)."""
    overview = view.overview
    return None if overview is None else cv2.cvtColor(overview.array, cv2.COLOR_BGRA2RGB)


def mpp_settable(info) -> bool:
    """Whether the user may give the slide of ``info`` a pixel size (its file records none)."""
    return not info.mpp_x or info.mpp_set_by_user


class StainEstimator(QObject):
    """Estimates stain matrices as jobs of the tile loader, which reads slides off the GUI
    thread and tells the window when no read is pending (so a slide is never closed
    under one); ``ready(slide, image_type, matrix)``."""

    ready = Signal(object, str, object)

    def __init__(self, loader, parent=None):
        super().__init__(parent)
        self.loader = loader
        self._jobs: dict[int, tuple[object, str]] = {}  # owner -> (slide, image type)
        loader.tile_ready.connect(self._on_ready, QUEUED)

    def request(self, slide, image_type: str) -> None:
        """Estimate ``slide``'s stain vectors for ``image_type`` in the background."""
        owner = hash((id(self), id(slide), image_type))
        self._jobs[owner] = (slide, image_type)
        key = TileKey("stain", owner, 0, 0, 0, 0)
        produce = partial(self._estimate, slide, image_type)
        self.loader.submit(owner, [(ESTIMATE_PRIORITY, key, produce)])

    @staticmethod
    def _estimate(slide, image_type: str) -> CachedTile:
        return CachedTile(None, slide_view_matrix(slide, image_type))

    def _on_ready(self, owner, key: TileKey) -> None:
        job = self._jobs.pop(owner, None)
        tile = self.loader.cache.peek(key) if job is not None else None
        if tile is not None:
            self.ready.emit(*job, tile.array)


class DisplayPanel(QWidget):
    """Display controls of the active pane (see the module docstring).

    Parameters
    ----------
    loader : TileLoader
        The panes' loader, which also runs the stain estimates.

    Signals
    -------
    pixel_size_changed(view)
        The user set or cleared the pixel size of ``view``'s slide.
    error(message)
        A setting could not be stored (one sentence).
    """

    pixel_size_changed = Signal(object)
    error = Signal(str)

    def __init__(self, loader: TileLoader, parent=None):
        super().__init__(parent)
        self.view = None
        self._types: dict[str, str] = {}  # slide fingerprint -> image type
        self._matrices: dict[tuple[str, str], np.ndarray] = {}  # (fingerprint, type) -> matrix
        self.estimator = StainEstimator(loader, self)
        self.estimator.ready.connect(self._on_matrix)
        self.image_type = QComboBox()
        for key, label in IMAGE_TYPES.items():
            self.image_type.addItem(label, key)
        self.image_type.setToolTip(
            "What the slide is (guessed from its colours when it opens); stored with the slide"
        )
        self.stain = QComboBox()
        self.stain.setToolTip("Show one stain of the colour deconvolution alone, or the slide")
        self.grey = QCheckBox("Grey")
        self.grey.setToolTip("Draw the stain view in grey instead of the stain's own colour")
        self.channel = QComboBox()
        self.channel.addItems(CHANNELS)
        self.sliders = {name: self._slider(name) for name in ("Brightness", "Contrast", "Gamma")}
        self.reset = QPushButton("Reset")
        self.reset.setToolTip("Draw the slide as the file stores it (levels back to neutral)")
        self.auto = QPushButton("Auto")
        self.auto.setToolTip("Stretch the 0.5-99.5 % range of the overview to black and white")
        self.mpp = QDoubleSpinBox(decimals=4, minimum=MPP_RANGE[0], maximum=MPP_RANGE[1])
        self.mpp.setSuffix(" µm/px")
        self.mpp.setValue(0.25)
        self.mpp.setToolTip("Microns per level-0 pixel, for a file that records none")
        self.set_mpp = QPushButton("Set")
        self.clear_mpp = QPushButton("Clear")
        self.clear_mpp.setToolTip("Forget the pixel size you gave this slide")
        self._layout()
        self._connect()
        self.sync_controls()

    def _slider(self, name: str) -> QSlider:
        slider = QSlider(Qt.Orientation.Horizontal)
        slider.setRange(*SLIDER_RANGE)
        slider.setToolTip(
            {
                "Brightness": "Shift the display range darker (left) or brighter (right)",
                "Contrast": "Narrow (right) or widen (left) the display range",
                "Gamma": "Brighten (right) or darken (left) the mid-tones",
            }[name]
        )
        return slider

    def _layout(self) -> None:
        for combo in (self.image_type, self.stain, self.channel):  # the dock stays narrow
            combo.setSizeAdjustPolicy(
                QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
            )
            combo.setMinimumContentsLength(COMBO_CHARACTERS)
        form = QFormLayout(self)
        form.addRow("Image type", self.image_type)
        stain = QHBoxLayout()
        stain.addWidget(self.stain, 1)
        stain.addWidget(self.grey)
        form.addRow("Stain view", stain)
        form.addRow("Channel", self.channel)
        for name, slider in self.sliders.items():
            form.addRow(name, slider)
        buttons = QHBoxLayout()
        buttons.addWidget(self.reset)
        buttons.addWidget(self.auto)
        form.addRow(buttons)
        form.addRow("Pixel size", self.mpp)
        mpp = QHBoxLayout()
        mpp.addWidget(self.set_mpp)
        mpp.addWidget(self.clear_mpp)
        form.addRow(mpp)
        self.mpp_note = QLabel()
        self.mpp_note.setWordWrap(True)
        form.addRow(self.mpp_note)

    def _connect(self) -> None:
        self.image_type.activated.connect(self._on_type_chosen)
        self.stain.activated.connect(self._apply_stain)
        self.grey.toggled.connect(self._apply_stain)
        self.channel.currentIndexChanged.connect(self._show_levels)
        for slider in self.sliders.values():
            slider.valueChanged.connect(self._on_slider)
        self.reset.clicked.connect(self.reset_levels)
        self.auto.clicked.connect(self.auto_levels)
        self.set_mpp.clicked.connect(lambda: self.set_pixel_size(self.mpp.value()))
        self.clear_mpp.clicked.connect(lambda: self.set_pixel_size(None))

    # -- panes ---------------------------------------------------------------------------
    def watch(self, view) -> None:
        """Guess the image type of every slide ``view`` shows once its overview arrives."""
        view.overview_ready.connect(lambda v=view: self._on_overview(v))

    def set_view(self, view) -> None:
        """Act on ``view`` (the active pane)."""
        self.view = view
        self.sync_controls()

    def image_type_of(self, view) -> str | None:
        """The image type of ``view``'s slide (stored, else guessed); None before its overview."""
        return None if view.slide is None else self._types.get(view.slide.info.fingerprint)

    def estimated_matrix(self, view) -> np.ndarray | None:
        """The stain vectors estimated on ``view``'s slide; None until they are."""
        image_type = self.image_type_of(view)
        return self._matrices.get((view.slide.info.fingerprint, image_type)) if image_type else None

    def _on_overview(self, view) -> None:
        slide = view.slide
        if slide is None or slide.info.fingerprint in self._types:
            return
        stored = load_settings(slide.info.fingerprint).image_type
        rgb = overview_rgb(view)
        if stored is None and rgb is None:  # the overview went with a slide replaced meanwhile
            return
        self._set_type(view, stored or guess_image_type(rgb))

    def _set_type(self, view, image_type: str) -> None:
        fingerprint = view.slide.info.fingerprint
        self._types[fingerprint] = image_type
        if image_type in STAINS and (fingerprint, image_type) not in self._matrices:
            self.estimator.request(view.slide, image_type)
        if view.display.stain is not None:
            view.set_display(view.display.with_stain(None))  # its stains may not exist here
        if view is self.view:
            self.sync_controls()

    def _on_type_chosen(self) -> None:
        view = self.view
        if view is None or view.slide is None:
            return
        image_type = self.image_type.currentData()
        self._set_type(view, image_type)
        self._store(view, image_type=image_type)

    def _store(self, view, **changes) -> bool:
        """Store changed settings of ``view``'s slide; False (and ``error``) when refused."""
        fingerprint = view.slide.info.fingerprint
        try:
            save_settings(fingerprint, replace(load_settings(fingerprint), **changes))
        except Her2ViewerError as exc:
            self.error.emit(str(exc))
            return False
        return True

    # -- stain view ----------------------------------------------------------------------
    def _apply_stain(self) -> None:
        view = self.view
        if view is None or view.slide is None:
            return
        stain = self.stain.currentData()
        matrix = self._matrix(view)
        view.set_display(view.display.with_stain(stain, matrix, self.grey.isChecked()))
        self.grey.setEnabled(stain is not None)

    def _matrix(self, view) -> np.ndarray | None:
        image_type = self.image_type_of(view)
        if image_type not in STAINS:
            return None
        estimated = self.estimated_matrix(view)
        return REFERENCE_MATRICES[image_type] if estimated is None else estimated

    def _on_matrix(self, slide, image_type: str, matrix) -> None:
        fingerprint = slide.info.fingerprint
        self._matrices[(fingerprint, image_type)] = matrix
        view = self.view
        shown = None if view is None or view.slide is None else view.slide.info.fingerprint
        if shown == fingerprint and view.display.stain is not None:
            display = view.display
            view.set_display(display.with_stain(display.stain, matrix, display.grey))

    # -- levels --------------------------------------------------------------------------
    def _channel(self) -> int | None:
        index = self.channel.currentIndex()
        return index - 1 if index > 0 else None

    def _on_slider(self) -> None:
        view = self.view
        if view is None or view.slide is None:
            return
        values = {name: slider.value() for name, slider in self.sliders.items()}
        levels = Levels.from_brightness_contrast(
            values["Brightness"] / 100,
            2 ** (values["Contrast"] / CONTRAST_STEPS_PER_DOUBLING),
            2 ** (values["Gamma"] / GAMMA_STEPS_PER_DOUBLING),
        )
        view.set_display(view.display.with_levels(levels, self._channel()))

    def reset_levels(self) -> None:
        """Levels back to neutral on every channel (the stain view stays)."""
        if self.view is not None and self.view.slide is not None:
            self.view.set_display(replace(self.view.display, levels=NEUTRAL))
            self._show_levels()

    def auto_levels(self) -> None:
        """Stretch the overview's 0.5-99.5 % percentiles (per channel for fluorescence)."""
        view = self.view
        image = None if view is None else overview_rgb(view)
        if image is None:
            return
        display = view.display
        if display.stain is not None:
            image = stain_view(
                image, np.array(display.matrix), stain_index(display.stain), display.grey
            )
        per_channel = self.image_type_of(view) == "fluorescence"
        view.set_display(replace(display, levels=auto_levels(image, per_channel)))
        self._show_levels()

    def _show_levels(self) -> None:
        """Put the sliders where the active pane's levels (of the chosen channel) are."""
        view = self.view
        levels = Levels() if view is None else view.display.levels[self._channel() or 0]
        positions = {
            "Brightness": 100 * levels.brightness,
            "Contrast": CONTRAST_STEPS_PER_DOUBLING * math.log2(levels.contrast),
            "Gamma": GAMMA_STEPS_PER_DOUBLING * math.log2(levels.gamma),
        }
        for name, slider in self.sliders.items():
            slider.blockSignals(True)
            slider.setValue(round(min(max(positions[name], SLIDER_RANGE[0]), SLIDER_RANGE[1])))
            slider.blockSignals(False)

    # -- sessions ------------------------------------------------------------------------
    def restore(self, view, display, image_type: str | None, mpp: float | None) -> None:
        """Draw ``view``'s slide as a saved session left it.

        Parameters
        ----------
        view : SlideView
            A pane showing a slide.
        display : DisplaySettings
            Its levels and stain view (with the stain vectors it was shown with).
        image_type : str or None
            The slide's image type then; one stored with the slide since wins, and a stain
            view that is not of the type that wins is not restored.
        mpp : float or None
            A pixel size the user gave the slide, for a file that records none.
        """
        fingerprint = view.slide.info.fingerprint
        image_type = load_settings(fingerprint).image_type or image_type
        if display.stain is not None and display.stain not in STAINS.get(image_type, {}):
            display = display.with_stain(None)
        if display.stain is not None:
            self._matrices.setdefault((fingerprint, image_type), np.array(display.matrix))
        if image_type is not None and self._types.get(fingerprint) != image_type:
            self._set_type(view, image_type)
        info = view.slide.info
        if mpp is not None and mpp_settable(info) and info.mpp_x != mpp:
            self.set_pixel_size(mpp, view)
        view.set_display(display)
        if view is self.view:
            self.sync_controls()

    # -- pixel size ----------------------------------------------------------------------
    def set_pixel_size(self, mpp: float | None, view=None) -> None:
        """Give the slide of ``view`` (the active pane by default), which records none,
        pixel size ``mpp``; None clears."""
        view = view or self.view
        if view is None or view.slide is None or not self._store(view, mpp=mpp):
            return
        apply_pixel_size(view.slide, mpp)
        view.update()
        self.sync_controls()
        self.pixel_size_changed.emit(view)

    # -- controls ------------------------------------------------------------------------
    def sync_controls(self) -> None:
        """Show the active pane's settings; disable (saying why) what does not apply."""
        view = self.view
        slide = None if view is None else view.slide
        image_type = None if view is None else self.image_type_of(view)
        for widget in self.findChildren(QWidget):
            widget.blockSignals(True)
        self.image_type.setCurrentIndex(max(0, self.image_type.findData(image_type)))
        self._fill_stains(view, image_type)
        fluorescence = image_type == "fluorescence"
        if not fluorescence:
            self.channel.setCurrentIndex(0)
        for widget in self.findChildren(QWidget):
            widget.blockSignals(False)
        for widget in (self.image_type, self.reset, self.auto, *self.sliders.values()):
            widget.setEnabled(slide is not None)
        self.channel.setEnabled(fluorescence)
        self.channel.setToolTip(
            "Adjust one channel of the fluorescence slide, or all"
            if fluorescence
            else "Brightfield slides are adjusted on all channels together; set the image "
            "type to Fluorescence for per-channel levels"
        )
        self._sync_mpp(slide)
        self._show_levels()

    def _fill_stains(self, view, image_type: str | None) -> None:
        self.stain.clear()
        self.stain.addItem("Slide (all stains)", None)
        for name in STAINS.get(image_type, {}):
            self.stain.addItem(f"{STAIN_LABELS[name]} only", name)
        shown = None if view is None else view.display.stain
        self.stain.setCurrentIndex(max(0, self.stain.findData(shown)))
        self.stain.setEnabled(image_type in STAINS)
        if image_type not in STAINS:
            self.stain.setToolTip(
                "Stain views need a brightfield image type (H&E or H-DAB)"
                if image_type
                else "Open a slide first"
            )
        self.grey.setChecked(view is not None and view.display.grey)
        self.grey.setEnabled(shown is not None)

    def _sync_mpp(self, slide) -> None:
        info = None if slide is None else slide.info
        settable = info is not None and mpp_settable(info)
        self.mpp.setEnabled(settable)
        self.set_mpp.setEnabled(settable)
        self.clear_mpp.setEnabled(settable and info.mpp_set_by_user)
        if info is None:
            why = "Open a slide first."
        elif info.mpp_set_by_user:
            why = f"{info.mpp_x:g} µm/px, set by user (the file records none)."
        elif info.mpp_x:
            why = f"The file records {info.mpp_x:.4f} µm/px; it cannot be overridden."
        else:
            why = "The file records no pixel size: set one to get scale bars in µm."
        self.mpp_note.setText(why)
        self.set_mpp.setToolTip(
            "Store this pixel size with the slide and use it for scale bars and magnification"
            if settable
            else why
        )
        if info is not None and info.mpp_set_by_user:
            self.mpp.setValue(info.mpp_x)
