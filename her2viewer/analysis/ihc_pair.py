"""An H&E / IHC pair analysed together: registration, IHC score, DAB and category maps.

This is what the viewer runs in the background when a pair is open; it is plain
data (no Qt), so scripts can run it too.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from her2viewer.analysis.contract import load_npz, save_npz
from her2viewer.analysis.ihc import IhcOptions, IhcResult, analyse_ihc
from her2viewer.annotations.roi import Region
from her2viewer.jobs import JobContext
from her2viewer.overlay.layers import HeatmapLayer, MaskLayer
from her2viewer.registration import Registration, register_slides, warp_map
from her2viewer.slide import Slide, open_slide
from her2viewer.stain.deconvolution import HDAB, separate_stains

#: Level-0 pixels per pixel of the DAB map shown on the IHC pane.
DAB_MAP_DOWNSAMPLE = 16
#: DAB optical density mapped to the top of the colormap.
DAB_MAP_MAX_OD = 0.3


@dataclass(frozen=True)
class IhcPairOptions:
    """Options of :func:`analyse_ihc_pair`.

    Attributes
    ----------
    ihc_path : str
        The paired IHC slide (registered onto the H&E slide the analysis is given).
    ihc : IhcOptions
        How the IHC slide is scored (its ``region`` in IHC level-0 pixels).
    he_region : Region, optional
        A region drawn on the H&E: mapped onto the IHC through the registration and
        scored there (instead of ``ihc.region``).
    """

    ihc_path: str
    ihc: IhcOptions = field(default_factory=IhcOptions)
    he_region: Region | None = None


@dataclass
class IhcPairResult:
    """Registration of the IHC onto the H&E, the IHC score and a DAB map (IHC frame)."""

    registration: Registration
    score: IhcResult
    dab_map: np.ndarray
    dab_downsample: float

    def layers(self) -> list:
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
        return [dab, *self.score.layers()]

    def summary(self) -> dict:
        """JSON-ready figures: the registration and the IHC score (no maps)."""
        return {
            "registration": self.registration.to_json_dict(),
            "score": self.score.summary(),
            "dab_downsample": float(self.dab_downsample),
        }

    def save(self, path: str | Path) -> Path:
        """Write the result to one ``.npz`` file, atomically (an :class:`OutputError` if not)."""
        arrays = {"dab_map": self.dab_map, "category_map": self.score.category_map}
        return save_npz(path, self.summary(), **arrays)

    @classmethod
    def load(cls, path: str | Path) -> IhcPairResult:
        """Read a result written by :meth:`save` (a :class:`ModelError` when unreadable)."""
        summary, arrays = load_npz(path, "IHC pair")
        reg = summary["registration"]
        registration = Registration(
            np.asarray(reg["matrix"]), reg["method"], reg["error_px"], reg["quality"],
            reg["fixed"], reg["moving"],
        )  # fmt: skip
        score = IhcResult.from_summary(summary["score"], arrays["category_map"])
        return cls(registration, score, arrays["dab_map"], summary["dab_downsample"])

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


def _ihc_options(options: IhcPairOptions, registration: Registration) -> IhcOptions:
    """The IHC scoring options, with an H&E region mapped onto the IHC."""
    if options.he_region is None:
        return options.ihc
    matrix = registration.inverse().matrix  # H&E level-0 -> IHC level-0
    region = options.he_region.transformed(matrix, "drawn on the H&E, mapped onto the IHC")
    return replace(options.ihc, region=region)


def analyse_ihc_pair(
    slide: Slide,
    bundle: None = None,
    options: IhcPairOptions | None = None,
    context: JobContext | None = None,
) -> IhcPairResult:
    """Register the paired IHC slide onto the H&E ``slide``, score it and map its DAB.

    Parameters
    ----------
    slide : Slide
        The open H&E slide (the fixed frame).
    bundle : None
        The pair analysis needs no model; present for the common contract.
    options : IhcPairOptions
        The IHC slide's path and how it is scored (required).
    context : JobContext, optional
        Progress and cancellation of a background job.

    Raises
    ------
    RegistrationError
        When the slides cannot be registered (one line, no wrong answer).
    """
    if options is None:
        raise TypeError("analyse_ihc_pair needs IhcPairOptions naming the IHC slide.")
    steps = ("registering", "scoring", "mapping DAB")
    report = context.report if context else (lambda *a: None)
    with open_slide(options.ihc_path) as ihc:
        report(0, len(steps), steps[0])
        registration = register_slides(slide, ihc)
        report(1, len(steps), steps[1])  # also where a cancelled job stops
        score = analyse_ihc(ihc, None, _ihc_options(options, registration))
        report(2, len(steps), steps[2])
        values, downsample = dab_map(ihc)
    report(3, len(steps), "done")
    return IhcPairResult(registration, score, values, downsample)
