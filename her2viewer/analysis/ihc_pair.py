"""An H&E / IHC pair analysed together: registration, IHC score, DAB and category maps.

This is what the viewer runs in the background when a pair is open; it is plain
data (no Qt), so scripts can run it too.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from her2viewer.analysis.ihc import CATEGORIES, NOT_TUMOR, IhcScore, score_ihc
from her2viewer.jobs import JobContext
from her2viewer.overlay.layers import HeatmapLayer, MaskLayer
from her2viewer.registration import Registration, register_slides, warp_map
from her2viewer.slide import Slide
from her2viewer.stain.deconvolution import HDAB, separate_stains

#: Level-0 pixels per pixel of the DAB map shown on the IHC pane.
DAB_MAP_DOWNSAMPLE = 16
#: DAB optical density mapped to the top of the colormap.
DAB_MAP_MAX_OD = 0.3
#: Colours of the score categories (negative .. strong complete), browns getting darker.
CATEGORY_COLORS = {1: (120, 150, 200), 2: (240, 200, 120), 3: (200, 120, 40), 4: (120, 50, 10)}


@dataclass
class IhcPairResult:
    """Registration of the IHC onto the H&E, the IHC score and a DAB map (IHC frame)."""

    registration: Registration
    score: IhcScore
    dab_map: np.ndarray
    dab_downsample: float

    def ihc_layers(self) -> list:
        """Overlay layers for the IHC pane: DAB optical density and score categories."""
        dab = HeatmapLayer(
            "DAB optical density",
            values=self.dab_map,
            downsample=self.dab_downsample,
            colormap="inferno",
            vmin=0.0,
            vmax=DAB_MAP_MAX_OD,
            threshold=0.03,
            units="OD",
            opacity=0.6,
        )
        labels = np.where(self.score.category_map == NOT_TUMOR, 0, self.score.category_map + 1)
        categories = MaskLayer(
            "HER2 score categories",
            labels=labels.astype(np.uint8),
            downsample=self.score.map_downsample,
            class_names={i + 1: name for i, name in enumerate(CATEGORIES)},
            colors=CATEGORY_COLORS,
            opacity=0.5,
        )
        return [dab, categories]

    def he_mask_on_ihc(self, layer: MaskLayer, ihc_shape: tuple[int, int]) -> MaskLayer:
        """Return an H&E-pane mask layer resampled in place onto the IHC pane.

        Parameters
        ----------
        layer : MaskLayer
            A mask in H&E level-0 coordinates (e.g. a tumor mask).
        ihc_shape : (int, int)
            Level-0 ``(width, height)`` of the IHC slide.
        """
        out_shape = (
            int(np.ceil(ihc_shape[1] / layer.downsample)),
            int(np.ceil(ihc_shape[0] / layer.downsample)),
        )
        labels = warp_map(
            layer.labels, layer.downsample, self.registration.inverse().matrix,
            out_shape, layer.downsample,
        )  # fmt: skip
        return MaskLayer(
            f"{layer.name} (from H&E)",
            labels=labels,
            downsample=layer.downsample,
            class_names=dict(layer.class_names),
            colors=dict(layer.colors),
            mode="outline",
            opacity=0.9,
        )


def dab_map(slide: Slide, downsample: float = DAB_MAP_DOWNSAMPLE) -> tuple[np.ndarray, float]:
    """DAB optical density of a whole IHC slide at about ``downsample`` (reference H-DAB).

    Returns
    -------
    (numpy.ndarray, float)
        The ``(h, w)`` float32 map and its level-0 downsample.
    """
    level = slide.best_level_for_downsample(downsample)
    image = slide.level_image(level)
    stains = separate_stains(image, HDAB)
    return np.clip(stains[..., 1], 0.0, None), slide.info.levels[level].downsample


def analyse_pair(he: Slide, ihc: Slide, context: JobContext | None = None) -> IhcPairResult:
    """Register the IHC slide onto the H&E slide, score it and map its DAB.

    Parameters
    ----------
    he, ihc : Slide
        The paired slides.
    context : JobContext, optional
        Progress and cancellation of a background job.

    Raises
    ------
    RegistrationError
        When the slides cannot be registered (one line, no wrong answer).
    """
    steps = ("registering", "scoring", "mapping DAB")
    report = context.report if context else (lambda *a: None)
    report(0, len(steps), steps[0])
    registration = register_slides(he, ihc)
    report(1, len(steps), steps[1])  # also where a cancelled job stops
    score = score_ihc(ihc)
    report(2, len(steps), steps[2])
    values, downsample = dab_map(ihc)
    report(3, len(steps), "done")
    return IhcPairResult(registration, score, values, downsample)
