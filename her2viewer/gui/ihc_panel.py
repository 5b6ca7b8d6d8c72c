"""The paired IHC in the viewer: registered in the background, scored, DAB and categories shown.

``attach_ihc_panel(window)`` docks an :class:`IhcPanel`. *Register & score* runs
:func:`her2viewer.analysis.ihc_pair.analyse_pair` on the two panes' slides in a
background job, then links the panes through the registration (navigation and the
cursor move in step), adds the DAB and score-category layers to the IHC pane, maps the
H&E pane's masks (e.g. a tumor mask) in place onto the IHC, and shows the score.
"""

from __future__ import annotations

from her2viewer.analysis.ihc_pair import IhcPairResult, analyse_pair
from her2viewer.gui.job_panel import JobPanel, dock_panel
from her2viewer.overlay.layers import MaskLayer
from her2viewer.slide import open_slide


class IhcPanel(JobPanel):
    """Register the second pane (IHC) onto the first (H&E), score it, show its maps."""

    def __init__(self, window) -> None:
        super().__init__(window, "Register && score IHC")
        self.result: IhcPairResult | None = None

    def run(self) -> None:
        """Start registration and scoring of the open pair in a background job."""
        slides = [s for s in getattr(self.window, "slides", []) if s is not None]
        if len(slides) < 2:
            self.window.show_error("Open an H&E slide and its paired IHC slide first.")
            return
        he_path, ihc_path = slides[0].info.path, slides[1].info.path

        def work(context):
            with open_slide(he_path) as he, open_slide(ihc_path) as ihc:
                return analyse_pair(he, ihc, context)

        self.start(work, "ihc-pair", "Registering and scoring the IHC…")

    def show_result(self, result: IhcPairResult) -> None:
        """Link the panes by the registration and show the IHC layers and score."""
        self.result = result
        self.window.set_pane_transform(1, result.registration.matrix)
        ihc = self.window.views[1].slide.info
        mapped = [
            result.he_mask_on_ihc(layer, (ihc.width, ihc.height))
            for layer in self.window.views[0].layers
            if isinstance(layer, MaskLayer) and layer.visible
        ]
        self.replace_layers([(layer, 1) for layer in result.ihc_layers() + mapped])
        score = result.score
        shares = ", ".join(f"{k.replace('_', ' ')} {v:.0f}%" for k, v in score.percentages.items())
        self.status.setText(
            f"IHC {score.score}+ ({score.guideline}): {score.recommendation}. "
            f"Tumor regions: {shares}. Registered by {result.registration.method}, "
            f"residual {result.registration.error_px:.1f} px."
        )


def attach_ihc_panel(window) -> IhcPanel:
    """Dock an :class:`IhcPanel` on the right of ``window`` and return it."""
    return dock_panel(window, IhcPanel(window), "IHC")
