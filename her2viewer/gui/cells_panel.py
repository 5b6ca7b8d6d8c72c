"""Cells in the viewer: every cell found, classed and scored, with a live threshold preview.

``attach_cells_panel(window)`` docks an analysis panel with a :class:`CellsWidget`. *Find &
score cells* runs :func:`her2viewer.analysis.cells.analyse_cells` on the active pane's slide
(or inside the region of the dock's shared
:class:`~her2viewer.gui.region_chooser.RegionChooser`: the selected annotations or those of a
class) in the worker process, then shows the cells as dots by class (high zoom) and a density
map of positive cells (low zoom), the category with its guideline sentence, and a histogram
of the per-cell scores with the thresholds drawn; a region's annotations get its figures.

Moving a threshold slider re-runs the engine on the pane's *visible* region only (a
background thread, debounced; the chooser's region is not used), so the dots, the histogram
and the percentages follow the sliders within a fraction of a second; the time of each
preview is shown. A profile can be chosen per antibody, loaded from and saved to JSON.
"""

from __future__ import annotations

import time
from functools import partial
from pathlib import Path

import numpy as np
import pyqtgraph as pg
import shapely
from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSlider,
)

from her2viewer.analysis.cells import (
    CLASS_COLORS,
    SAFE_COLORS,
    SITES,
    SPECIMENS,
    CellsOptions,
    CellsResult,
    analyse_cells,
)
from her2viewer.analysis.ihc import slide_stain_matrix
from her2viewer.annotations.roi import Region, region_text
from her2viewer.cells.engine import KI67_METHODS
from her2viewer.cells.profiles import (
    BUILT_IN,
    DEFAULT_FOR_MARKER,
    MARKERS,
    ScoringProfile,
    Thresholds,
    load_profile,
    save_profile,
)
from her2viewer.errors import Her2ViewerError
from her2viewer.gui.analysis_panel import AnalysisPanel, ResultWidget, dock_analysis
from her2viewer.gui.region_chooser import area_figures
from her2viewer.jobs import Job
from her2viewer.overlay.points import PointsLayer

#: Threshold sliders: OD in hundredths.
SLIDER_RANGE = (1, 200)
#: Quiet time after the last slider move before a preview starts (ms).
DEBOUNCE_MS = 150
#: Most analysis pixels a preview reads (a 1600 x 1000 view at 20x is 1.6 M).
PREVIEW_MAX_PIXELS = 4_000_000
#: Core tile side of a preview: a 1600 x 1000 view at 20x is two tiles, one per core
#: (median 175 ms on the 2-core machine against 270 ms as one tile; more CPU, less wait).
PREVIEW_TILE = 1024
THRESHOLD_NAMES = ("weak", "moderate", "strong")


def run_preview(slide, bounds, options: CellsOptions, context) -> tuple[CellsResult, float]:
    """The cells of the level-0 box ``bounds`` (x0, y0, x1, y1) and the seconds it took."""
    start = time.perf_counter()
    region = Region(shapely.box(*bounds), "the visible region")
    result = analyse_cells(slide, None, _with(options, region=region), context)
    return result, time.perf_counter() - start


def _with(options: CellsOptions, **changes) -> CellsOptions:
    return CellsOptions(**{**vars(options), **changes})


class CellsWidget(ResultWidget):
    """The cells' part of the panel: marker, profile, thresholds, preview, histogram, export."""

    analyse = staticmethod(analyse_cells)
    result_type = CellsResult
    run_text = "Find && score cells"
    running_text = "Finding and scoring the cells…"
    job_name = "cells"
    regions = True

    def __init__(self) -> None:
        super().__init__()
        self.result: CellsResult | None = None
        self.preview_result: CellsResult | None = None
        self.preview_seconds: float | None = None
        self.preview_layer: PointsLayer | None = None
        self.preview_job: Job | None = None
        self._preview_again = False
        self._stains: tuple[str, np.ndarray] | None = None  # (slide path, matrix)
        self.loaded_profiles: dict[str, ScoringProfile] = {}
        self._preview_pane = 0
        self._preview_key: tuple | None = None  # what the shown preview was measured with
        self._job_key: tuple | None = None
        form = QFormLayout()
        self.marker_box = QComboBox()
        self.marker_box.addItems(list(MARKERS))
        self.profile_box = QComboBox()
        self.site_box, self.specimen_box = QComboBox(), QComboBox()
        self.site_box.addItems(list(SITES))
        self.specimen_box.addItems(list(SPECIMENS))
        self.ki67_box = QComboBox()
        self.ki67_box.addItems(list(KI67_METHODS))
        self.ki67_box.setToolTip(
            "IKWG 2021: global (every tumor cell) or hot-spot (the densest 0.2 mm² circle)"
        )
        form.addRow("marker", self.marker_box)
        form.addRow("profile", self.profile_box)
        form.addRow("HER2 site", self.site_box)
        form.addRow("specimen", self.specimen_box)
        form.addRow("Ki67 method", self.ki67_box)
        self.sliders: dict[str, QSlider] = {}
        self.slider_labels: dict[str, QLabel] = {}
        for name in THRESHOLD_NAMES:
            slider = QSlider(Qt.Orientation.Horizontal)
            slider.setRange(*SLIDER_RANGE)
            label = QLabel()
            row = QHBoxLayout()
            row.addWidget(slider)
            row.addWidget(label)
            form.addRow(name, row)
            self.sliders[name], self.slider_labels[name] = slider, label
        self.live = QCheckBox("Live preview on the visible region")
        self.live.setChecked(True)
        self.live.setToolTip("Find cells in the visible region as the sliders move")
        self.safe_colors = QCheckBox("Colour-blind-safe colours")
        self.safe_colors.setToolTip("Draw the cell classes in colours told apart by everyone")
        form.addRow(self.live)
        form.addRow(self.safe_colors)
        self.preview_label = QLabel("")
        self.preview_label.setWordWrap(True)
        form.addRow(self.preview_label)
        self.body.addLayout(form)
        self.histogram = pg.PlotWidget()
        self.histogram.setMinimumHeight(160)
        self.histogram.setLabel("bottom", "DAB OD")
        self.histogram.setLabel("left", "cells")
        self.bars = self.histogram.plot(
            [0, 1], [0], stepMode="center", fillLevel=0, brush=(120, 120, 160, 160)
        )
        self.threshold_lines = {
            name: pg.InfiniteLine(angle=90, pen=pg.mkPen(CLASS_COLORS[i + 1], width=2))
            for i, name in enumerate(THRESHOLD_NAMES)
        }
        for line in self.threshold_lines.values():
            self.histogram.addItem(line)
        self.body.addWidget(self.histogram)
        buttons = QHBoxLayout()
        self.load_button, self.save_button = (
            QPushButton("Load profile…"),
            QPushButton("Save profile…"),
        )
        self.csv_button, self.geojson_button = (
            QPushButton("Export CSV…"),
            QPushButton("Export GeoJSON…"),
        )
        for button, tip in (
            (self.load_button, "Load a scoring profile (thresholds, nucleus sizes) from JSON"),
            (self.save_button, "Save the scoring profile as JSON"),
            (self.csv_button, "Save every cell's measurements of the last run as CSV or Parquet"),
            (self.geojson_button, "Save the cells of the last run as QuPath GeoJSON"),
        ):
            button.setToolTip(tip)
            buttons.addWidget(button)
        self.body.addLayout(buttons)
        self.debounce = QTimer(self)
        self.debounce.setSingleShot(True)
        self.debounce.setInterval(DEBOUNCE_MS)
        self.debounce.timeout.connect(self.preview)
        self.preview_timer = QTimer(self)
        self.preview_timer.setInterval(30)
        self.preview_timer.timeout.connect(self._poll_preview)
        self.marker_box.currentTextChanged.connect(self._on_marker)
        self.profile_box.currentTextChanged.connect(self._on_profile)
        for slider in self.sliders.values():
            slider.valueChanged.connect(self._on_slider)
        self.safe_colors.toggled.connect(self._recolour)
        self.load_button.clicked.connect(self._load_dialog)
        self.save_button.clicked.connect(self._save_dialog)
        self.csv_button.clicked.connect(lambda: self._export_dialog("CSV (*.csv *.parquet)"))
        self.geojson_button.clicked.connect(lambda: self._export_dialog("GeoJSON (*.geojson)"))
        self._on_marker(self.marker_box.currentText())

    # -- profile and thresholds -----------------------------------------------------------
    @property
    def marker(self) -> str:
        """The chosen marker."""
        return self.marker_box.currentText()

    def _on_marker(self, marker: str) -> None:
        names = [n for n, p in {**BUILT_IN, **self.loaded_profiles}.items() if p.marker == marker]
        self.profile_box.blockSignals(True)
        self.profile_box.clear()
        self.profile_box.addItems(names)
        self.profile_box.setCurrentText(DEFAULT_FOR_MARKER[marker])
        self.profile_box.blockSignals(False)
        self._on_profile(self.profile_box.currentText())
        self.histogram.setLabel(
            "bottom", "membrane DAB OD" if marker == "her2" else "nucleus DAB OD"
        )
        self.ki67_box.setEnabled(marker == "ki67")

    def base_profile(self) -> ScoringProfile:
        """The chosen profile as saved (before the sliders)."""
        name = self.profile_box.currentText()
        return self.loaded_profiles.get(name) or load_profile(name, self.marker)

    def _on_profile(self, name: str) -> None:
        if not name:
            return
        self.set_thresholds(self.base_profile().thresholds)

    def set_thresholds(self, thresholds: Thresholds) -> None:
        """Put ``thresholds`` on the sliders (one preview follows)."""
        for name in THRESHOLD_NAMES:
            slider = self.sliders[name]
            slider.blockSignals(True)
            slider.setValue(round(getattr(thresholds, name) * 100))
            slider.blockSignals(False)
        self._on_slider()

    def thresholds(self) -> Thresholds:
        """The sliders' thresholds (always increasing: a slider pushes its neighbours)."""
        return Thresholds(**{n: self.sliders[n].value() / 100 for n in THRESHOLD_NAMES})

    def _keep_order(self) -> None:
        values = [self.sliders[n].value() for n in THRESHOLD_NAMES]
        moved = self.sender()
        names = list(THRESHOLD_NAMES)
        index = names.index(next((n for n, s in self.sliders.items() if s is moved), "weak"))
        for i in range(index + 1, 3):
            values[i] = max(values[i], values[i - 1] + 1)
        for i in range(index - 1, -1, -1):
            values[i] = min(values[i], values[i + 1] - 1)
        low, high = SLIDER_RANGE
        values = [min(max(v, low + i), high - 2 + i) for i, v in enumerate(values)]
        for name, value in zip(names, values, strict=True):
            self.sliders[name].blockSignals(True)
            self.sliders[name].setValue(value)
            self.sliders[name].blockSignals(False)

    def _on_slider(self, _value: int | None = None) -> None:
        self._keep_order()
        for name in THRESHOLD_NAMES:
            value = self.sliders[name].value() / 100
            self.slider_labels[name].setText(f"{value:.2f}")
            self.threshold_lines[name].setValue(value)
        if self.live.isChecked():
            self.debounce.start()

    def profile(self) -> ScoringProfile:
        """The chosen profile with the sliders' thresholds."""
        return self.base_profile().model_copy(update={"thresholds": self.thresholds()})

    def _load_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Load scoring profile", "", "JSON (*.json)")
        if path:
            self.load_profile_file(path)

    def load_profile_file(self, path: str | Path) -> None:
        """Read a saved profile, add it to the choices and choose it."""
        try:
            profile = load_profile(path, self.marker)
        except Her2ViewerError as exc:
            self.window.show_error(str(exc))
            return
        self.loaded_profiles[profile.name] = profile
        self._on_marker(self.marker)
        self.profile_box.setCurrentText(profile.name)

    def _save_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save scoring profile", "", "JSON (*.json)")
        if path:
            self.save_profile_file(path)

    def save_profile_file(self, path: str | Path) -> None:
        """Save the chosen profile with the sliders' thresholds, named after the file."""
        profile = self.profile().model_copy(update={"name": Path(path).stem})
        try:
            save_profile(profile, path)
        except Her2ViewerError as exc:
            self.window.show_error(str(exc))

    # -- the run --------------------------------------------------------------------------
    def pane(self) -> int | None:
        """The active pane if it shows a slide, else the first that does."""
        views = self.window.views
        active = getattr(self.window, "active", None)
        if active in views and active.slide is not None:
            return views.index(active)
        return next((i for i, s in enumerate(self.window.slides) if s is not None), None)

    def panes(self) -> tuple[int, ...] | None:
        """The pane to analyse (the region chooser draws its region there); None after a
        message."""
        pane = self.pane()
        if pane is None:
            self.window.show_error("Open an IHC slide first.")
            return None
        return (pane,)

    def options(self, panes: tuple[int, ...]) -> CellsOptions:
        """Marker, profile with the sliders' thresholds, region and guideline."""
        return CellsOptions(
            marker=self.marker,
            profile=self.profile(),
            region=self.run_region,
            tumor_site=self.site_box.currentText(),
            specimen=self.specimen_box.currentText(),
            ki67_method=self.ki67_box.currentText(),
        )

    def figures(self, result: CellsResult) -> dict:
        """The counts, the positive share, the category and the H-score for the region's
        annotations, named ``"Cells <MARKER> ..."``."""
        summary = result.summary()
        prefix = f"Cells {summary['marker'].upper()}"
        figures = {
            f"{prefix} cells": summary["n_cells"],
            f"{prefix} positive %": round(summary["positive_percent"], 1),
        }
        if "category" in summary:
            figures[f"{prefix} category"] = summary["category"]
        if "h_score" in summary:
            figures[f"{prefix} H-score"] = summary["h_score"]
        return {**figures, **area_figures(prefix, summary)}

    def layers(self, result: CellsResult, pane: int) -> list[tuple[object, int]]:
        """The density map and the cells' dots (in the chosen colours) on the pane."""
        self._remove_preview()
        shown = result.layers()
        for layer in shown:
            if isinstance(layer, PointsLayer):
                layer.set_display(colors=dict(self.colors()))
        return [(layer, pane) for layer in shown]

    def colors(self) -> dict:
        """Class colours: the usual ones or the colour-blind-safe ones."""
        return SAFE_COLORS if self.safe_colors.isChecked() else CLASS_COLORS

    def _recolour(self) -> None:
        layers = [layer for layer, _ in self.panel.layers] if self.panel else []
        for layer in [*layers, self.preview_layer]:
            if isinstance(layer, PointsLayer):
                layer.set_display(colors=dict(self.colors()))
        for view in self.window.views:
            view.refresh()

    def describe(self, result: CellsResult) -> str:
        """Category and guideline, the shares per class, where the tumor cells are."""
        return describe_cells(result.summary())

    def show(self, result: CellsResult) -> None:
        """The histogram of the result's per-cell scores."""
        self.result = result
        self.show_histogram(result.scores())

    def clear(self) -> None:
        """Forget the result and the preview."""
        self.result = self.preview_result = self._preview_key = None
        self._remove_preview()
        self.show_histogram(np.zeros(0))

    def show_histogram(self, scores: np.ndarray) -> None:
        """Draw the per-cell scores' histogram (the threshold lines stay)."""
        top = max(1.5, float(np.percentile(scores, 99.5)) if scores.size else 0.0)
        counts, edges = np.histogram(np.clip(scores, 0, top), bins=60, range=(0, top))
        self.bars.setData(edges, counts)

    # -- the live preview -----------------------------------------------------------------
    def preview(self) -> None:
        """Show the visible region's cells with the sliders' thresholds.

        When only the thresholds that class measured cells changed (any threshold of a
        nuclear marker; moderate or strong for HER2, whose membranes are measured at the
        weak one), the shown cells are classed again at once; otherwise the engine runs on
        the visible region in a background thread.
        """
        pane = self.pane()
        if pane is None:
            return
        if self.preview_job is not None:  # one at a time: the newest settings run next
            self._preview_again = True
            self.preview_job.cancel()
            return
        view = self.window.views[pane]
        slide = view.slide
        x0, y0, x1, y1 = view.visible_bounds()
        scale = (slide.info.mpp_x or 0.5) / 0.5
        if (x1 - x0) * (y1 - y0) * min(1.0, scale) ** 2 > PREVIEW_MAX_PIXELS or x1 <= x0:
            self.preview_label.setText("Zoom in (10x or more) for a live preview.")
            return
        options = CellsOptions(
            marker=self.marker,
            profile=self.profile(),
            tumor_site=self.site_box.currentText(),
            specimen=self.specimen_box.currentText(),
            outlines=False,
            tile=PREVIEW_TILE,
            stain_matrix=self._stain_matrix(slide),
        )
        key = _measure_key(slide.info.path, (x0, y0, x1, y1), options)
        if self.preview_result is not None and key == self._preview_key:
            start = time.perf_counter()
            result = self.preview_result.reclassed(options.profile)
            self.show_preview(result, time.perf_counter() - start)
            return
        work = partial(_preview_work, slide, (x0, y0, x1, y1), options)
        self.preview_job = Job(work, "cells-preview", background=True).start()
        self._preview_pane, self._job_key = pane, key
        self.preview_timer.start()

    def _stain_matrix(self, slide) -> np.ndarray | None:
        """The slide's stain vectors, once per slide (the first preview estimates them)."""
        if self._stains is not None and self._stains[0] == slide.info.path:
            return self._stains[1]
        return None

    def _poll_preview(self) -> None:
        job = self.preview_job
        if job is None or job.state in ("pending", "running"):
            return
        self.preview_timer.stop()
        self.preview_job = None
        if job.state == "done":
            result, seconds, matrix = job.result
            self._stains = (self._job_key[0], matrix)
            self._preview_key = self._job_key
            self.show_preview(result, seconds)
        elif job.state == "failed":
            self.preview_label.setText(f"Preview: {job.error}")
        if self._preview_again:
            self._preview_again = False
            self.preview()

    def show_preview(self, result: CellsResult, seconds: float) -> None:
        """Show a preview: its dots on the pane, the histogram, the shares and its time."""
        self.preview_result, self.preview_seconds = result, seconds
        self._remove_preview()
        layer = next(x for x in result.layers() if isinstance(x, PointsLayer))
        layer.name = f"Cells preview ({result.cells.marker.upper()})"
        layer.set_display(colors=dict(self.colors()))
        self.preview_layer = layer
        self.window.add_layer(layer, self._preview_pane)
        self.show_histogram(result.scores())
        summary = result.summary()
        shares = ", ".join(f"{k} {v:.0f}%" for k, v in summary["class_percent"].items())
        self.preview_label.setText(
            f"Preview: {summary['n_cells']} cells in view ({shares}) in {1000 * seconds:.0f} ms"
        )

    def _remove_preview(self) -> None:
        if self.preview_layer is None:
            return
        for view in self.window.views:
            if self.preview_layer in view.layers:
                view.remove_layer(self.preview_layer)
        self.preview_layer = None

    def _export_dialog(self, kinds: str) -> None:
        if self.result is None:
            self.window.show_error("Find the cells first.")
            return
        path, _ = QFileDialog.getSaveFileName(self, "Export cells", "", kinds)
        if path:
            self.export(path)

    def export(self, path: str | Path) -> None:
        """Write the result's cells: GeoJSON for ``.geojson``, else the cell table."""
        try:
            if Path(path).suffix.lower() in (".geojson", ".json"):
                self.result.write_geojson(path)
            else:
                self.result.write_table(path)
        except Her2ViewerError as exc:
            self.window.show_error(str(exc))


def _measure_key(path: str, bounds, options: CellsOptions) -> tuple:
    """What a preview's measurements depend on: the slide, the view, the marker, the
    detection settings, the guideline and, for HER2, the weak threshold."""
    profile = options.profile
    weak = profile.thresholds.weak if options.marker == "her2" else None
    rounded = tuple(round(v) for v in bounds)
    return (path, rounded, options.marker, profile.nucleus, options.tumor_site,
            options.specimen, weak)  # fmt: skip


def _preview_work(slide, bounds, options: CellsOptions, context):
    """A preview job: the slide's stain vectors (estimated once), then the visible cells."""
    matrix = options.stain_matrix
    if matrix is None:
        matrix = slide_stain_matrix(slide)
    result, seconds = run_preview(slide, bounds, _with(options, stain_matrix=matrix), context)
    return result, seconds, matrix


def describe_cells(summary: dict) -> str:
    """A cells summary in one paragraph."""
    shares = ", ".join(f"{k} {v:.1f}%" for k, v in summary["class_percent"].items())
    where = region_text(summary) if summary.get("region") else summary["tumor_cells"]
    head = f"{summary['marker'].upper()}: {summary['n_cells']} cells"
    if "category" in summary:
        head += f", {summary['category']} ({summary['label']}): {summary['rule']}"
    spot = summary.get("figures", {}).get("hot_spot")
    if spot:
        head += (f" (hot spot: {spot['n_cells']} cells in {spot['area_mm2']:.2f} mm² around "
                 f"{spot['x']:.0f}, {spot['y']:.0f} px)")  # fmt: skip
    return f"{head}. {shares}. Tumor cells: {where}. Profile {summary['profile']}."


def attach_cells_panel(window) -> AnalysisPanel:
    """Dock the Cells :class:`AnalysisPanel` on ``window`` and return it (runs on demand)."""
    return dock_analysis(window, CellsWidget(), "Cells")
