"""IHC patch grading in the viewer (seed 004): grade the IHC slide, Grad-CAM of the view.

``attach_grading_panel(window)`` docks an analysis panel with a :class:`GradingWidget`.
*Grade IHC* grades the tumor-enriched patches of the IHC slide (the first pane whose file
name marks it as IHC, else the active pane) with :func:`her2viewer.analysis.grade.analyse_grade`
in a background job (progress, cancel; the worker keeps the model loaded between runs,
see :mod:`~her2viewer.gui.grading_model`), shows the slide grade (argmax of the mean
patch probability) with the class probabilities, and adds the per-patch grade layer
to that pane. *Grad-CAM here* computes Grad-CAM over the tissue patches of the region
the pane shows, in the background, and adds it as a heatmap layer. *Score selected
region* grades only the patches inside the selected annotations (or a class) of the IHC
pane, whose results get the grade.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import QLabel, QPushButton

from her2viewer.analysis.gradcam import GradCamMap
from her2viewer.analysis.grade import GradeOptions, GradeResult, gradcam_layer, gradcam_slide
from her2viewer.gui.analysis_panel import (
    AnalysisPanel,
    ResultWidget,
    bundle_notice,
    dock_analysis,
)
from her2viewer.gui.grading_model import grade_kept, kept_model
from her2viewer.gui.region_chooser import area_figures
from her2viewer.models.checks import with_notice
from her2viewer.models.patch_cnn import default_grading_bundle
from her2viewer.slide.pairing import IHC_TOKENS

#: Level-0 pixels per Grad-CAM map pixel.
CAM_DOWNSAMPLE = 8.0


class GradingWidget(ResultWidget):
    """Grading's part of the panel: class probabilities and *Grad-CAM here*."""

    analyse = staticmethod(grade_kept)  # the grading CNN stays loaded between runs
    result_type = GradeResult
    run_text = "Grade IHC"
    running_text = "Grading the IHC slide's tumor patches…"
    job_name = "grading"
    default_bundle = staticmethod(default_grading_bundle)
    regions = True

    def __init__(self) -> None:
        super().__init__()
        self.cam: GradCamMap | None = None
        self._entries: dict[str, tuple[object, int]] = {}
        self.probabilities = QLabel("")
        self.cam_button = QPushButton("Grad-CAM here")
        self.cam_button.setToolTip("Show where the grading model looked, around the view centre")
        self.body.addWidget(self.probabilities)
        self.body.addWidget(self.cam_button)
        self.cam_button.clicked.connect(self.run_gradcam)

    def panes(self) -> tuple[int, ...] | None:
        """The IHC pane (by file name, else the active pane); None after a message."""
        panes = [(i, s) for i, s in enumerate(self.window.slides) if s is not None]
        if not panes:
            self.window.show_error("Open an IHC slide first.")
            return None
        for index, slide in panes:
            if any(token.lower() in Path(slide.info.path).name.lower() for token in IHC_TOKENS):
                return (index,)
        active = self.window.views.index(self.window.active)
        return (active if self.window.slides[active] is not None else panes[0][0],)

    def options(self, panes: tuple[int, ...]) -> GradeOptions:
        """The default grading, inside the chosen region."""
        return GradeOptions(region=self.run_region)

    def figures(self, result: GradeResult) -> dict:
        """The grade and the class probabilities for the region's annotations."""
        probabilities = zip(result.classes, result.mean_probability, strict=True)
        return {
            "IHC grade": result.grade,
            **{f"IHC grade p {name}": round(float(p), 3) for name, p in probabilities},
            **area_figures("IHC grade", result.roi),
        }

    def run_gradcam(self) -> None:
        """Grad-CAM over the tissue patches of the region the IHC pane shows."""
        panel = self.panel
        panes = self.panes() if panel.job is None else None
        bundle = panel.model_path(panel.bundle, default_grading_bundle) if panes else None
        if bundle is None:
            return
        panel.pane = panes[0]
        path = self.window.slides[panel.pane].info.path
        rect = self.window.views[panel.pane].visible_bounds()

        def work(context):
            cam = gradcam_slide(
                path, bundle, downsample=CAM_DOWNSAMPLE, progress=context.report,
                tumor="none", rect=rect, model=kept_model(bundle, None, "auto"),
            )  # fmt: skip
            return cam, bundle_notice(bundle)

        panel.start(work, "gradcam", "Grad-CAM of the region in view…", panes)

    def layers(self, result, pane: int) -> list[tuple[object, int]]:
        """The patch grades and the Grad-CAM of the view, whichever were computed."""
        if isinstance(result, GradeResult):
            self._entries["grades"] = (result.layers()[0], pane)
        else:
            self._entries["cam"] = (gradcam_layer(result[0], "Grad-CAM (view)"), pane)
        return list(self._entries.values())

    def describe(self, result) -> str:
        """The slide grade, or what the Grad-CAM explains (with its model's notice)."""
        if isinstance(result, GradeResult):
            return (
                f"IHC grade {result.grade} from {len(result.probs)} patches "
                f"({result.rule}; mean patch probability)"
            )
        cam, notice = result
        return with_notice(
            f"Grad-CAM of {len(cam.patch_probs)} patches in view (each patch's predicted grade)",
            notice,
        )

    def show(self, result) -> None:
        """The class probabilities of a grading; keep a Grad-CAM map."""
        if not isinstance(result, GradeResult):
            self.cam = result[0]
            return
        probabilities = ", ".join(
            f"{name} {p:.2f}"
            for name, p in zip(result.classes, result.mean_probability, strict=True)
        )
        self.probabilities.setText(
            with_notice(f"Class probabilities: {probabilities}", result.notice)
        )

    def clear(self) -> None:
        """Forget the Grad-CAM, the layers and the probabilities."""
        self.cam = None
        self._entries.clear()
        self.probabilities.setText("")


def attach_grading_panel(window, bundle: str | Path | None = None) -> AnalysisPanel:
    """Dock the grading :class:`AnalysisPanel` on the right of ``window`` and return it."""
    return dock_analysis(window, GradingWidget(), "IHC grading", bundle)
