"""The paired IHC in the viewer: registered in the background, scored, DAB and categories shown.

``attach_ihc_panel(window)`` docks an analysis panel with an :class:`IhcWidget`.
*Register & score* runs :func:`her2viewer.analysis.ihc_pair.analyse_ihc_pair` on the two
panes' slides in a background job, then links the panes through the registration (navigation and the
cursor move in step), adds the DAB and score-category layers to the IHC pane, maps the
H&E pane's masks (e.g. a tumor mask) in place onto the IHC, and shows the score.

*Score selected region* scores only inside the annotations selected on the active pane
(or every annotation of a class), minus the Ignore* ones; a region drawn on the H&E is
mapped onto the IHC by the registration. The score is written into those annotations'
results (one undoable command), so the measurement table shows it.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
from PySide6.QtWidgets import QComboBox, QDoubleSpinBox, QFileDialog, QFormLayout, QPushButton

from her2viewer.analysis.ihc import CATEGORIES, IhcOptions
from her2viewer.analysis.ihc_pair import IhcPairOptions, IhcPairResult, analyse_ihc_pair
from her2viewer.annotations.commands import Replace
from her2viewer.annotations.model import DEFAULT_CLASSES
from her2viewer.annotations.roi import (
    Region,
    RoiError,
    is_ignore_class,
    region_from_features,
    region_text,
)
from her2viewer.errors import Her2ViewerError
from her2viewer.gui.analysis_panel import AnalysisPanel, ResultWidget, dock_analysis
from her2viewer.overlay.layers import MaskLayer
from her2viewer.registration import Registration

#: Ranges of the manual correction controls (degrees, level-0 px).
NUDGE_DEGREES = 15.0
NUDGE_PIXELS = 2000.0
#: The region choices before the classes ("Class: Tumor", ...).
WHOLE_SLIDE, SELECTED = "Whole slide", "Selected annotations"
CLASS_PREFIX = "Class: "
#: How the panes are named in a region's description.
PANE_NAMES = ("H&E", "IHC")


class IhcWidget(ResultWidget):
    """The pair's part of the panel: the registration link and the nudge controls."""

    analyse = staticmethod(analyse_ihc_pair)
    result_type = IhcPairResult
    run_text = "Register && score IHC"
    running_text = "Registering and scoring the IHC…"
    job_name = "ihc-pair"

    def __init__(self) -> None:
        super().__init__()
        self.result: IhcPairResult | None = None
        self.registration: Registration | None = None
        #: The pane and region of the last run (None: the whole slide).
        self.region: tuple[int, Region] | None = None
        self.rotation, self.dx, self.dy = (QDoubleSpinBox() for _ in range(3))
        for box, limit, step in (
            (self.rotation, NUDGE_DEGREES, 0.1),
            (self.dx, NUDGE_PIXELS, 5.0),
            (self.dy, NUDGE_PIXELS, 5.0),
        ):
            box.setRange(-limit, limit)
            box.setSingleStep(step)
        form = QFormLayout()
        self.region_box = QComboBox()
        self.refresh_regions()
        score_region = QPushButton("Score selected region")
        score_region.setToolTip("Score the IHC inside the chosen annotation region only")
        form.addRow("region", self.region_box)
        form.addRow(score_region)
        score_region.clicked.connect(self.score_selected_region)
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
        """Both panes (H&E first, IHC second), the chosen region noted; None after a message."""
        slides = [s for s in getattr(self.window, "slides", []) if s is not None]
        if len(slides) < 2:
            self.window.show_error("Open an H&E slide and its paired IHC slide first.")
            return None
        try:
            self.region = self.chosen_region()
        except Her2ViewerError as exc:
            self.window.show_error(str(exc))
            return None
        return (0, 1)

    def refresh_regions(self, controller=None) -> None:
        """Offer the classes of the active pane's annotations (QuPath's defaults without one)."""
        classes = controller.document.classes if controller is not None else DEFAULT_CLASSES
        names = [CLASS_PREFIX + c.name for c in classes if not is_ignore_class(c.name)]
        current = self.region_box.currentText()
        self.region_box.clear()
        self.region_box.addItems([WHOLE_SLIDE, SELECTED, *names])
        self.region_box.setCurrentText(current)

    def score_selected_region(self) -> None:
        """Score the IHC inside the annotations selected on the active pane."""
        self.region_box.setCurrentText(SELECTED)
        self.panel.run()

    def chosen_region(self) -> tuple[int, Region] | None:
        """The pane and region the region box asks for (None: the whole slide).

        Raises
        ------
        RoiError
            When there is no annotated pane, nothing is selected, or no such class.
        """
        choice = self.region_box.currentText()
        if choice == WHOLE_SLIDE:
            return None
        controller = self.window.annotations.active
        if controller is None:
            raise RoiError("Click the pane whose annotations are to be scored first.")
        pane = self.window.views.index(controller.view)
        where = f"the {PANE_NAMES[pane]} pane"
        annotations = list(controller.document)
        if choice == SELECTED:
            if not controller.selected_ids:
                raise RoiError(f"Select the annotations to score on {where} first.")
            ids = controller.selected_ids
            return pane, region_from_features(annotations, ids=ids, source=f"{where} (selected)")
        name = choice.removeprefix(CLASS_PREFIX)
        return pane, region_from_features(annotations, [name], source=where)

    def options(self, panes: tuple[int, ...]) -> IhcPairOptions:
        """The IHC slide of the second pane and the region (on the IHC, or on the H&E)."""
        path = self.window.slides[panes[1]].info.path
        if self.region is None:
            return IhcPairOptions(path)
        pane, region = self.region
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

    def show(self, result: IhcPairResult) -> None:
        """Link the panes by the registration; a region's annotations get the score."""
        self.result = result
        self._link(result.registration)
        self._record(result)

    def _record(self, result: IhcPairResult) -> None:
        """Put the region's figures into its annotations' results (one undoable command)."""
        if self.region is None:
            return
        pane, region = self.region
        controller = self.window.annotations.controllers.get(self.window.views[pane])
        if controller is None:
            return
        figures = region_figures(result.score)
        document = controller.document
        changed = {
            i: document.get(i).replace(results={**document.get(i).results, **figures})
            for i in region.ids
            if i in document
        }
        if changed:
            controller.push(Replace(changed, "IHC score of the region"))

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
    summary = score.summary()
    area = {k: v for k, v in summary.items() if k.startswith("region_area_")}
    percentages = {f"IHC % {name}": round(score.percentages[name], 1) for name in CATEGORIES}
    return {"IHC score": score.label, **percentages, **{f"IHC {k}": v for k, v in area.items()}}


def attach_ihc_panel(window) -> AnalysisPanel:
    """Dock the IHC pair :class:`AnalysisPanel` on the right of ``window`` and return it;
    it runs whenever a pair is opened."""
    panel = dock_analysis(window, IhcWidget(), "IHC")
    window.pair_opened.connect(panel.run)
    window.annotations.active_changed.connect(panel.widget.refresh_regions)
    return panel
