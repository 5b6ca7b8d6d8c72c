"""The paired IHC in the viewer: registered in the background, scored, DAB and categories shown.

``attach_ihc_panel(window)`` docks an analysis panel with an :class:`IhcWidget`.
*Register & score* runs :func:`her2viewer.analysis.ihc_pair.analyse_ihc_pair` on the two
panes' slides in a background job, then links the panes through the registration (navigation and the
cursor move in step), adds the DAB and score-category layers to the IHC pane, maps the
H&E pane's masks (e.g. a tumor mask) in place onto the IHC, and shows the score.

*Score selected region* (the panel's :class:`~her2viewer.gui.region_chooser.RegionChooser`)
scores only inside the annotations selected on the active pane (or every annotation of a
class), minus the Ignore* ones; a region drawn on the H&E is mapped onto the IHC by the
registration. The score is written into those annotations' results (one undoable
command), so the measurement table shows it.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
from PySide6.QtWidgets import QDoubleSpinBox, QFileDialog, QFormLayout, QPushButton

from her2viewer.analysis.ihc import CATEGORIES, IhcOptions
from her2viewer.analysis.ihc_pair import IhcPairOptions, IhcPairResult, analyse_ihc_pair
from her2viewer.annotations.roi import region_text
from her2viewer.gui.analysis_panel import AnalysisPanel, ResultWidget, dock_analysis
from her2viewer.gui.region_chooser import area_figures
from her2viewer.overlay.layers import MaskLayer
from her2viewer.registration import Registration

#: Ranges of the manual correction controls (degrees, level-0 px).
NUDGE_DEGREES = 15.0
NUDGE_PIXELS = 2000.0


class IhcWidget(ResultWidget):
    """The pair's part of the panel: the registration link and the nudge controls."""

    analyse = staticmethod(analyse_ihc_pair)
    result_type = IhcPairResult
    run_text = "Register && score IHC"
    running_text = "Registering and scoring the IHC…"
    job_name = "ihc-pair"
    regions = True

    def __init__(self) -> None:
        super().__init__()
        self.result: IhcPairResult | None = None
        self.registration: Registration | None = None
        self.rotation, self.dx, self.dy = (QDoubleSpinBox() for _ in range(3))
        for box, limit, step in (
            (self.rotation, NUDGE_DEGREES, 0.1),
            (self.dx, NUDGE_PIXELS, 5.0),
            (self.dy, NUDGE_PIXELS, 5.0),
        ):
            box.setRange(-limit, limit)
            box.setSingleStep(step)
        form = QFormLayout()
        form.addRow("nudge rotation (deg)", self.rotation)
        form.addRow("nudge x (px)", self.dx)
        form.addRow("nudge y (px)", self.dy)
        apply_button, save_button = QPushButton("Apply nudge"), QPushButton("Save transform…")
        apply_button.setToolTip("Shift and turn the IHC pane's registration by the nudge above")
        save_button.setToolTip("Save the registration of the pair as a JSON transform file")
        form.addRow(apply_button, save_button)
        self.body.addLayout(form)
        apply_button.clicked.connect(self.apply_nudge)
        save_button.clicked.connect(self._save_dialog)

    def panes(self) -> tuple[int, ...] | None:
        """Both panes (H&E first, IHC second); None after a message."""
        slides = [s for s in getattr(self.window, "slides", []) if s is not None]
        if len(slides) < 2:
            self.window.show_error("Open an H&E slide and its paired IHC slide first.")
            return None
        return (0, 1)

    def options(self, panes: tuple[int, ...]) -> IhcPairOptions:
        """The IHC slide of the second pane and the region (on the IHC, or on the H&E)."""
        path = self.window.slides[panes[1]].info.path
        if self.panel.region is None:
            return IhcPairOptions(path)
        pane, region = self.panel.region
        if pane == panes[1]:
            return IhcPairOptions(path, IhcOptions(region=region))
        return IhcPairOptions(path, he_region=region)

    def layers(self, result: IhcPairResult, pane: int) -> list[tuple[object, int]]:
        """The IHC layers and the H&E pane's visible masks mapped onto the IHC pane."""
        ihc = self.window.views[1].slide.info
        mapped = [
            result.he_mask_on_ihc(layer, (ihc.width, ihc.height))
            for layer in self.window.views[0].layers
            if isinstance(layer, MaskLayer) and layer.visible
        ]
        return [(layer, 1) for layer in result.layers() + mapped]

    def describe(self, result: IhcPairResult) -> str:
        """The score, its recommendation, the category shares and the registration."""
        score = result.score
        shares = ", ".join(f"{k.replace('_', ' ')} {v:.0f}%" for k, v in score.percentages.items())
        return (
            f"IHC {score.label} ({score.guideline}): {score.recommendation}. "
            f"Tumor regions: {shares}. Region: {region_text(score.summary())}. "
            f"Registered by {result.registration.method}, "
            f"residual {result.registration.error_px:.1f} px."
        )

    def figures(self, result: IhcPairResult) -> dict:
        """The score's figures for the region's annotations."""
        return region_figures(result.score)

    def show(self, result: IhcPairResult) -> None:
        """Link the panes by the registration."""
        self.result = result
        self._link(result.registration)

    def clear(self) -> None:
        """Forget the registration: the panes sync relatively again."""
        if self.registration is not None and len(self.window.views) > 1:
            self.window.set_pane_transform(1, None)
        self.result = self.registration = None

    def _link(self, registration: Registration) -> None:
        self.registration = registration
        self.window.set_pane_transform(1, registration.matrix)

    def apply_nudge(self) -> None:
        """Correct the registration by the rotation and offset in the boxes (in the H&E frame).

        The rotation turns about the H&E point the IHC slide's centre maps to.
        """
        if self.result is None:
            self.window.show_error("Register the pair before correcting it.")
            return
        base = self.result.registration
        ihc = self.window.views[1].slide.info
        cx, cy = base.transform_points(np.array([[ihc.width / 2, ihc.height / 2]]))[0]
        angle = math.radians(self.rotation.value())
        c, s = math.cos(angle), math.sin(angle)
        nudge = np.array(
            [[c, -s, cx - c * cx + s * cy + self.dx.value()],
             [s, c, cy - s * cx - c * cy + self.dy.value()], [0, 0, 1]]
        )  # fmt: skip
        self._link(replace(base, matrix=nudge @ base.matrix, method=f"{base.method}+manual"))

    def save_transform(self, path: str | Path) -> None:
        """Save the current (possibly corrected) registration as JSON."""
        if self.registration is None:
            self.window.show_error("There is no registration to save yet.")
            return
        self.registration.save(path)

    def _save_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save transform", "", "JSON (*.json)")
        if path:
            self.save_transform(path)


def region_figures(score) -> dict:
    """An IHC score's figures as an annotation shows them in its measurements."""
    percentages = {f"IHC % {name}": round(score.percentages[name], 1) for name in CATEGORIES}
    return {"IHC score": score.label, **percentages, **area_figures("IHC", score.summary())}


def attach_ihc_panel(window) -> AnalysisPanel:
    """Dock the IHC pair :class:`AnalysisPanel` on the right of ``window`` and return it;
    it runs whenever a pair is opened."""
    panel = dock_analysis(window, IhcWidget(), "IHC")
    window.pair_opened.connect(panel.run)
    return panel
