"""IHC patch grading in the viewer (seed 004): grade the IHC slide, Grad-CAM of the view.

``attach_grading_panel(window)`` docks a :class:`GradingPanel`. *Grade IHC* grades the
tumor-enriched patches of the IHC slide (the first pane whose file name marks it as
IHC, else the active pane) with :func:`her2viewer.analysis.patch_grading.grade_slide`
in a background job (progress, cancel), shows the slide grade (argmax of the mean
patch probability) with the class probabilities, and adds the per-patch grade layer
to that pane. *Grad-CAM here* computes Grad-CAM over the tissue patches of the region
the pane shows, in the background, and adds it as a heatmap layer.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import QLabel, QPushButton

from her2viewer.analysis.gradcam import GradCamMap
from her2viewer.analysis.patch_grading import (
    PatchGrading,
    gradcam_layer,
    gradcam_slide,
    grade_slide,
)
from her2viewer.gui.job_panel import JobPanel, bundle_notice, dock_panel, result_text
from her2viewer.models.checks import with_notice
from her2viewer.models.patch_cnn import default_grading_bundle
from her2viewer.slide.pairing import IHC_TOKENS

#: Level-0 pixels per Grad-CAM map pixel.
CAM_DOWNSAMPLE = 8.0
#: The counted phase of grading (the model's pass over the patches follows it).
PHASE = "reading patches"


class GradingPanel(JobPanel):
    """Grade the IHC pane's slide with a patch CNN (the demo bundle by default)."""

    def __init__(self, window, bundle: str | Path | None = None) -> None:
        super().__init__(window, "Grade IHC")
        self.bundle = Path(bundle) if bundle else None
        self.result: PatchGrading | None = None
        self.cam: GradCamMap | None = None
        self.pane: int | None = None
        self._entries: dict[str, tuple[object, int]] = {}
        self.probabilities = QLabel("")
        self.cam_button = QPushButton("Grad-CAM here")
        self.body.addWidget(self.probabilities)
        self.body.addWidget(self.cam_button)
        self.cam_button.clicked.connect(self.run_gradcam)

    def ihc_pane(self) -> int | None:
        """Index of the IHC pane (by file name, else the active pane); None after a message."""
        panes = [(i, s) for i, s in enumerate(self.window.slides) if s is not None]
        if not panes:
            self.window.show_error("Open an IHC slide first.")
            return None
        for index, slide in panes:
            if any(token.lower() in Path(slide.info.path).name.lower() for token in IHC_TOKENS):
                return index
        active = self.window.views.index(self.window.active)
        return active if self.window.slides[active] is not None else panes[0][0]

    def _prepare(self) -> tuple[int, str, Path] | None:
        """The pane, its slide path and the model; None when busy or missing."""
        if self.job is not None:
            return None
        index = self.ihc_pane()
        bundle = self.model_path(self.bundle, default_grading_bundle) if index is not None else None
        if bundle is None:
            return None
        return index, self.window.slides[index].info.path, bundle

    def run(self) -> None:
        """Grade the IHC slide's tumor patches in a background job."""
        prepared = self._prepare()
        if prepared is None:
            return
        self.pane, path, bundle = prepared

        def work(context):
            return grade_slide(
                path, bundle, progress=lambda done, total: context.report(done, total, PHASE)
            )

        self.start(work, "grading", "Grading the IHC slide's tumor patches…", (self.pane,))

    def run_gradcam(self) -> None:
        """Grad-CAM over the tissue patches of the region the IHC pane shows."""
        prepared = self._prepare()
        if prepared is None:
            return
        self.pane, path, bundle = prepared
        rect = self.window.views[self.pane].visible_bounds()

        def work(context):
            cam = gradcam_slide(
                path, bundle, downsample=CAM_DOWNSAMPLE, progress=context.report,
                tumor="none", rect=rect,
            )  # fmt: skip
            return cam, bundle_notice(bundle)

        self.start(work, "gradcam", "Grad-CAM of the region in view…", (self.pane,))

    def clear_result(self) -> None:
        """Forget the grading and the Grad-CAM with their layers."""
        self.result = self.cam = None
        self._entries.clear()
        self.probabilities.setText("")
        super().clear_result()

    def show_result(self, result: PatchGrading | tuple[GradCamMap, str | None]) -> None:
        """Show a grading (grade, probabilities, patch layer) or a Grad-CAM with its model's
        notice (heatmap layer)."""
        if isinstance(result, PatchGrading):
            self.result = result
            self._entries["grades"] = (result.layer(), self.pane)
            probabilities = ", ".join(
                f"{name} {p:.2f}"
                for name, p in zip(result.classes, result.mean_probability, strict=True)
            )
            self.status.setText(
                result_text(
                    f"IHC grade {result.grade} from {len(result.probs)} patches "
                    f"({result.rule}; mean patch probability)",
                    result,
                )
            )
            self.probabilities.setText(
                with_notice(f"Class probabilities: {probabilities}", result.notice)
            )
        else:
            self.cam, notice = result
            self._entries["cam"] = (gradcam_layer(self.cam, "Grad-CAM (view)"), self.pane)
            self.status.setText(
                with_notice(
                    f"Grad-CAM of {len(self.cam.patch_probs)} patches in view "
                    "(each patch's predicted grade)",
                    notice,
                )
            )
        self.replace_layers(list(self._entries.values()))


def attach_grading_panel(window, bundle: str | Path | None = None) -> GradingPanel:
    """Dock a :class:`GradingPanel` on the right of ``window`` and return it."""
    return dock_panel(window, GradingPanel(window, bundle), "IHC grading")
