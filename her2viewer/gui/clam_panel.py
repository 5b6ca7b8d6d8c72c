"""CLAM in the viewer: analyse the open slide in the background, live heatmap, top-k gallery.

``attach_clam_panel(window)`` docks an :class:`~her2viewer.gui.analysis_panel.AnalysisPanel`
with a :class:`ClamWidget`. *Analyse* runs :func:`her2viewer.analysis.clam.analyse_clam`
(segment -> patch -> extract -> CLAM -> heatmap) in a background job with progress and
cancel; the attention heatmap fills in as batches finish, results are cached per slide
fingerprint + encoder, the prediction is shown with its probabilities, and the highest-
and lowest-attention patches are listed (click to go there). *Score selected region*
analyses only the patches inside the selected annotations (or a class) of the pane,
whose results get the prediction.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QListWidget, QListWidgetItem

from her2viewer.analysis.clam import ClamOptions, ClamResult, analyse_clam
from her2viewer.gui.analysis_panel import AnalysisPanel, ResultWidget, dock_analysis
from her2viewer.gui.region_chooser import area_figures
from her2viewer.models.clam import demo_clam_bundle_path
from her2viewer.slide import open_slide

TOP_K = 8


class ClamWidget(ResultWidget):
    """CLAM's part of the panel: the live heatmap and the top-k attention gallery."""

    analyse = staticmethod(analyse_clam)
    result_type = ClamResult
    run_text = "Analyse (CLAM)"
    running_text = "Analysing: segment, patch, extract features, CLAM…"
    job_name = "clam"
    default_bundle = staticmethod(demo_clam_bundle_path)
    process = False  # on a thread: the partial heatmaps come back through the widget
    regions = True

    def __init__(self) -> None:
        super().__init__()
        self._partial: ClamResult | None = None
        self.gallery = QListWidget()
        self.body.addWidget(self.gallery)
        self.gallery.itemClicked.connect(self._jump)

    def work(self, path: str, bundle: Path | None, options):
        """The job, on a thread: its partial heatmaps are kept for the next poll."""

        def run(context):
            with open_slide(path) as slide:
                return analyse_clam(
                    slide, bundle, options, context,
                    on_partial=lambda heatmap: self._keep_partial(context, heatmap),
                )  # fmt: skip

        return run

    def _keep_partial(self, context, heatmap: ClamResult) -> None:
        """Keep a partial heatmap of the running job (set by the worker, shown by the next
        poll); one of a job dropped with its slide is ignored."""
        job = self.panel.job
        if job is not None and job.context is context:
            self._partial = heatmap

    def tick(self) -> None:
        """Show the latest partial heatmap, if a new one arrived."""
        partial, self._partial = self._partial, None
        if partial is not None:
            self.panel.replace_layers(self.layers(partial, self.panel.pane))

    def options(self, panes: tuple[int, ...]) -> ClamOptions:
        """The default pipeline, inside the chosen region."""
        return ClamOptions(region=self.run_region)

    def figures(self, result: ClamResult) -> dict:
        """The prediction and its probabilities for the region's annotations."""
        probabilities = zip(result.names, result.prediction.probabilities, strict=True)
        return {
            "CLAM prediction": result.names[result.prediction.prediction],
            **{f"CLAM p {name}": round(float(p), 3) for name, p in probabilities},
            **area_figures("CLAM", result.roi),
        }

    def describe(self, result: ClamResult) -> str:
        """The prediction with its probabilities and the number of patches."""
        probabilities = ", ".join(
            f"{name} {p:.2f}"
            for name, p in zip(result.names, result.prediction.probabilities, strict=True)
        )
        return (
            f"CLAM prediction: {result.names[result.prediction.prediction]} ({probabilities}); "
            f"{len(result.coords)} patches"
        )

    def show(self, result: ClamResult) -> None:
        """List the highest- and lowest-attention patches."""
        self.gallery.clear()
        half = _grid_step(result.coords) / 2
        for label, high in (("high", True), ("low", False)):
            for x, y in result.top_patches(TOP_K, high=high):
                item = QListWidgetItem(f"{label} attention: patch at ({x}, {y})")
                item.setData(Qt.ItemDataRole.UserRole, (float(x) + half, float(y) + half))
                self.gallery.addItem(item)

    def clear(self) -> None:
        """Forget the partial heatmap and the gallery."""
        self._partial = None
        self.gallery.clear()

    def _jump(self, item: QListWidgetItem) -> None:
        self.window.views[0].center_on(*item.data(Qt.ItemDataRole.UserRole))


def _grid_step(coords: np.ndarray) -> float:
    """The patch grid's step in level-0 px (the smallest gap between patch columns)."""
    gaps = np.diff(np.unique(coords[:, 0]))
    return float(gaps.min()) if gaps.size else 0.0


def attach_clam_panel(window, bundle: str | Path | None = None) -> AnalysisPanel:
    """Dock the CLAM :class:`AnalysisPanel` on the right of ``window`` and return it."""
    return dock_analysis(window, ClamWidget(), "CLAM", bundle)
