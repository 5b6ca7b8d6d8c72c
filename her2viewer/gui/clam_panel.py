"""CLAM in the viewer: Analyze the open slide in the background, live heatmap, top-k gallery.

``attach_clam_panel(window)`` docks a :class:`ClamPanel`. *Analyze* runs
:func:`her2viewer.analysis.clam.analyze_slide` (segment -> patch -> extract -> CLAM ->
heatmap) in a background job with progress and cancel; the attention heatmap fills in
as batches finish, results are cached per slide fingerprint + encoder, the prediction is
shown with its probabilities, and the highest- and lowest-attention patches are listed
(click to go there).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QListWidget, QListWidgetItem

from her2viewer.analysis.clam import ClamHeatmap, analyze_slide
from her2viewer.gui.job_panel import JobPanel, bundle_notice, dock_panel
from her2viewer.models.checks import with_notice
from her2viewer.models.clam import demo_clam_bundle_path
from her2viewer.overlay.layers import HeatmapLayer
from her2viewer.slide import open_slide

TOP_K = 8


def attention_layer(heatmap: ClamHeatmap, partial: bool = False) -> HeatmapLayer:
    """The attention heatmap as a viewer layer (coolwarm, as CLAM draws it)."""
    return HeatmapLayer(
        "CLAM attention (partial)" if partial else "CLAM attention",
        values=heatmap.values,
        downsample=heatmap.downsample,
        colormap="coolwarm",
        vmin=0.0,
        vmax=1.0,
        opacity=0.5,
    )


class ClamPanel(JobPanel):
    """Analyze the first pane's slide with a CLAM bundle (the demo bundle by default)."""

    def __init__(self, window, bundle: str | Path | None = None) -> None:
        super().__init__(window, "Analyze (CLAM)")
        self.bundle = Path(bundle) if bundle else None
        self.result: ClamHeatmap | None = None
        self._partial: ClamHeatmap | None = None
        self.gallery = QListWidget()
        self.body.addWidget(self.gallery)
        self.gallery.itemClicked.connect(self._jump)

    def run(self) -> None:
        """Start the analysis of the first pane's slide in a background job."""
        path = self.first_slide_path()
        bundle = self.model_path(self.bundle, demo_clam_bundle_path) if path else None
        if bundle is None:
            return

        def work(context):
            with open_slide(path) as slide:
                heatmap = analyze_slide(
                    slide, bundle, progress=context.report, cancel=context.token,
                    on_partial=lambda heatmap: self._keep_partial(context, heatmap),
                )  # fmt: skip
            return heatmap, bundle_notice(bundle)

        self.start(work, "clam", "Analysing: segment, patch, extract features, CLAM…", (0,))

    def _keep_partial(self, context, heatmap: ClamHeatmap) -> None:
        """Keep a partial heatmap of the running job (set by the worker, shown by the next
        poll); one of a job dropped with its slide is ignored."""
        if self.job is not None and self.job.context is context:
            self._partial = heatmap

    def clear_result(self) -> None:
        """Forget the result: heatmap, prediction and gallery."""
        self.result = self._partial = None
        self.gallery.clear()
        super().clear_result()

    def on_tick(self) -> None:
        """Show the latest partial heatmap, if a new one arrived."""
        partial, self._partial = self._partial, None
        if partial is not None:
            self.replace_layers([(attention_layer(partial, partial=True), 0)])

    def show_result(self, result: tuple[ClamHeatmap, str | None]) -> None:
        """Final heatmap layer, prediction with probabilities (and the model's demo notice),
        and the top-k gallery."""
        self.result, notice = result
        result = self.result
        self.replace_layers([(attention_layer(result), 0)])
        names = result.class_names or [str(i) for i in range(len(result.prediction.probabilities))]
        probabilities = ", ".join(
            f"{name} {p:.2f}"
            for name, p in zip(names, result.prediction.probabilities, strict=True)
        )
        self.status.setText(
            with_notice(
                f"CLAM prediction: {names[result.prediction.prediction]} ({probabilities}); "
                f"{len(result.coords)} patches",
                notice,
            )
        )
        self.gallery.clear()
        half = _grid_step(result.coords) / 2
        for label, high in (("high", True), ("low", False)):
            for x, y in result.top_patches(TOP_K, high=high):
                item = QListWidgetItem(f"{label} attention: patch at ({x}, {y})")
                item.setData(Qt.ItemDataRole.UserRole, (float(x) + half, float(y) + half))
                self.gallery.addItem(item)

    def _jump(self, item: QListWidgetItem) -> None:
        self.window.views[0].center_on(*item.data(Qt.ItemDataRole.UserRole))


def _grid_step(coords: np.ndarray) -> float:
    """The patch grid's step in level-0 px (the smallest gap between patch columns)."""
    gaps = np.diff(np.unique(coords[:, 0]))
    return float(gaps.min()) if gaps.size else 0.0


def attach_clam_panel(window, bundle: str | Path | None = None) -> ClamPanel:
    """Dock a :class:`ClamPanel` on the right of ``window`` and return it."""
    return dock_panel(window, ClamPanel(window, bundle), "CLAM")
