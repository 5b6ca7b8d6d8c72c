"""HER2Net's prediction on one slide, as plain data: tiles -> tumor masks -> strong tiles -> P.

The rules of the method (seed 002): tiles with at most
:data:`~.choices.TUMOR_MIN_FRACTION` tumor pixels are not classified, and a slide is HER2 positive
when ``P`` (formula 1, :func:`high_expression_percent`) reaches :data:`~.choices.POSITIVE_PERCENT`.
The overlay layers, the result files and the cache are the analysis's
(:mod:`her2viewer.analysis.her2net`); training and evaluation call :func:`predict_her2net`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from her2viewer.annotations.roi import Region, RoiError, region_summary
from her2viewer.errors import ModelError
from her2viewer.jobs import JobContext
from her2viewer.models.checks import check_slide_scope, demo_notice, require_finite
from her2viewer.models.her2net.choices import POSITIVE_PERCENT, TUMOR_MIN_FRACTION
from her2viewer.models.her2net.model import Her2NetModel
from her2viewer.slide import Slide
from her2viewer.tissue.tiles import (
    BACKGROUND_SATURATION,
    TileLayout,
    is_background,
    read_tile_batches,
    tile_layout,
)


def is_tumor_tile(tumor: np.ndarray, min_fraction: float = TUMOR_MIN_FRACTION) -> bool:
    """True when more than ``min_fraction`` of the tile's pixels are tumor (non-tumor filter)."""
    return bool(np.asarray(tumor, bool).mean() > min_fraction)


def high_expression_percent(tumor_pixels, strong) -> float:
    """Seed formula (1): tumor pixels of strong tiles over tumor pixels of all classified tiles.

    Parameters
    ----------
    tumor_pixels : array-like
        Tumor pixel count of each classified tile.
    strong : array-like of bool
        Whether each tile was classified strong.

    Returns
    -------
    float
        P in percent (0 when there is no tumor).
    """
    tumor = np.asarray(tumor_pixels, np.float64)
    strong = np.asarray(strong, bool)
    if tumor.shape != strong.shape:
        raise ModelError("One strong/weak call is needed per tile.")
    total = tumor.sum()
    return float(100.0 * tumor[strong].sum() / total) if total > 0 else 0.0


@dataclass(frozen=True)
class Her2NetOptions:
    """Thresholds of one prediction (seed values by default); ``region`` restricts it to the
    tiles whose centre lies in an annotated region (level-0 pixels of the slide)."""

    positive_percent: float = POSITIVE_PERCENT
    tumor_min_fraction: float = TUMOR_MIN_FRACTION
    background_saturation: float = BACKGROUND_SATURATION
    strong_threshold: float = 0.5
    batch_size: int = 32
    workers: int = 2
    region: Region | None = None


@dataclass
class TileRecord:
    """One tissue tile: where it is and what HER2Net made of it (areas in level-0 px)."""

    x: int
    y: int
    tumor_fraction: float
    tumor_area_px: float
    classified: bool
    strong_probability: float | None
    strong: bool | None


@dataclass
class Her2NetPrediction:
    """HER2Net's answer for one slide.

    Attributes
    ----------
    her2_status : str
        ``positive`` when P >= ``positive_percent``.
    high_expression_percent : float
        P in percent.
    tumor_area_px, strong_area_px : float
        Tumor area of the classified tiles and of the strong tiles, level-0 pixels.
    tumor_mask, strong_mask : numpy.ndarray
        Bool masks at ``mask_downsample`` level-0 px per pixel (strong = tumor in strong tiles).
    tiles : list of TileRecord
        Every tissue (non-background) tile.
    tile_size_px : float
        Tile side in level-0 pixels.
    notice : str or None
        :data:`~her2viewer.models.checks.DEMO_NOTICE` for a synthetic demo bundle.
    warning : str or None
        The sentence of :func:`~her2viewer.models.checks.check_slide_scope` when the
        slide is outside what the bundle accepts.
    roi : dict
        The region analysed and its area (:func:`~her2viewer.annotations.roi.region_summary`).
    """

    her2_status: str
    high_expression_percent: float
    positive_percent: float
    tumor_area_px: float
    strong_area_px: float
    tumor_mask: np.ndarray
    strong_mask: np.ndarray
    mask_downsample: float
    tiles: list[TileRecord] = field(default_factory=list)
    tile_size_px: float = 0.0
    slide: str = ""
    bundle: str = ""
    files: dict = field(default_factory=dict)
    notice: str | None = None
    warning: str | None = None
    roi: dict = field(default_factory=dict)

    def summary(self) -> dict:
        """JSON-ready figures (no masks)."""
        return {
            "her2_status": self.her2_status,
            "high_expression_percent": self.high_expression_percent,
            "positive_percent": self.positive_percent,
            "tumor_area_px": self.tumor_area_px,
            "strong_area_px": self.strong_area_px,
            "mask_downsample": self.mask_downsample,
            "tile_size_px": self.tile_size_px,
            "n_tissue_tiles": len(self.tiles),
            "n_classified_tiles": sum(t.classified for t in self.tiles),
            "n_strong_tiles": sum(bool(t.strong) for t in self.tiles),
            "slide": self.slide,
            "bundle": self.bundle,
            "overlays": dict(self.files),
            "notice": self.notice,
            "warning": self.warning,
            **self.roi,
        }


def _paste(mask: np.ndarray, tile_mask: np.ndarray, layout: TileLayout, index: int) -> int:
    """Paste a tile mask into the slide mask (clipped to the slide); return pixels set."""
    ds = layout.mask_downsample
    col, row = (int(round(v / ds)) for v in layout.coords[index])
    h = min(tile_mask.shape[0], mask.shape[0] - row)
    w = min(tile_mask.shape[1], mask.shape[1] - col)
    mask[row : row + h, col : col + w] = tile_mask[:h, :w]
    return int(tile_mask[:h, :w].sum())


def predict_her2net(
    slide: Slide,
    model: Her2NetModel,
    options: Her2NetOptions | None = None,
    context: JobContext | None = None,
) -> Her2NetPrediction:
    """Run HER2Net on an open H&E slide.

    Parameters
    ----------
    slide : Slide
        H&E slide with a known magnification.
    model : Her2NetModel
        From :func:`her2viewer.models.her2net.load_her2net`.
    options : Her2NetOptions, optional
        Thresholds (seed values), batch size and reader threads.
    context : JobContext, optional
        Progress (tiles done of all) and cancellation.

    Returns
    -------
    Her2NetPrediction
    """
    options = options or Her2NetOptions()
    warning = check_slide_scope(model.meta, slide.info, _model_name(model))
    layout = tile_layout(slide, model.magnification, model.tile_size, model.input_size)
    region = options.region.on_slide(slide.info) if options.region is not None else None
    if region is not None:
        layout = _inside(layout, region, slide)
    ds = layout.mask_downsample
    w, h = layout.slide_size
    tumor_mask = np.zeros((math.ceil(h / ds), math.ceil(w / ds)), bool)
    strong_mask = np.zeros_like(tumor_mask)
    records, total = [], len(layout.coords)
    for batch, tiles in read_tile_batches(slide, layout, options.batch_size, options.workers):
        tissue = [
            k for k, t in enumerate(tiles) if not is_background(t, options.background_saturation)
        ]
        if tissue:
            records += _classify(
                model, options, layout, batch, tiles, tissue, (tumor_mask, strong_mask)
            )
        if context is not None:
            context.report(batch[-1] + 1, total, "HER2Net tiles")
    classified = [r for r in records if r.classified]
    tumor_px = [r.tumor_area_px for r in classified]
    percent = high_expression_percent(tumor_px, [r.strong for r in classified])
    return Her2NetPrediction(
        her2_status="positive" if percent >= options.positive_percent else "negative",
        high_expression_percent=percent,
        positive_percent=options.positive_percent,
        tumor_area_px=float(sum(tumor_px)),
        strong_area_px=float(sum(r.tumor_area_px for r in classified if r.strong)),
        tumor_mask=tumor_mask,
        strong_mask=strong_mask,
        mask_downsample=ds,
        tiles=records,
        tile_size_px=float(layout.tile_size0),
        slide=str(slide.info.path),
        bundle=str(model.meta.get("name", "")),
        notice=demo_notice(model.meta),
        warning=warning,
        roi=region_summary(region, slide.info.mpp_x),
    )


def _inside(layout: TileLayout, region: Region, slide: Slide) -> TileLayout:
    """The layout's tiles whose centre lies in ``region``.

    Raises
    ------
    RoiError
        When no tile centre lies inside it (a region smaller than a tile).
    """
    inside = region.contains_patches(layout.coords, layout.tile_size0)
    if not inside.any():
        raise RoiError(
            f"No HER2Net tile ({layout.tile_size0} px) of {Path(slide.info.path).name} has its "
            f"centre inside the region ({region.description}); draw a larger region."
        )
    return replace(layout, coords=layout.coords[inside])


def _model_name(model: Her2NetModel) -> str:
    """How sentences name a HER2Net model: its bundle name."""
    return f"the HER2Net model '{model.meta.get('name', 'her2net')}'"


def _classify(model, options, layout, batch, tiles, tissue, masks) -> list[TileRecord]:
    """Tumor masks and strong calls for the tissue tiles of one batch."""
    tumor_mask, strong_mask = masks
    source = f"The output of {_model_name(model)}"
    tumor_probability = model.tumor_probability(tiles[tissue])
    require_finite(tumor_probability, source)
    tumor = tumor_probability > 0.5
    keep = [k for k in range(len(tissue)) if is_tumor_tile(tumor[k], options.tumor_min_fraction)]
    probs = model.strong_probability(tiles[[tissue[k] for k in keep]]) if keep else []
    require_finite(probs, source)
    strong_prob = dict(zip(keep, probs, strict=True))
    out = []
    for k, index in enumerate(tissue):
        i = batch[index]
        area = _paste(tumor_mask, tumor[k], layout, i) * layout.mask_downsample**2
        prob = strong_prob.get(k)
        strong = None if prob is None else bool(prob >= options.strong_threshold)
        if strong:
            _paste(strong_mask, tumor[k], layout, i)
        x, y = (int(v) for v in layout.coords[i])
        out.append(
            TileRecord(
                x,
                y,
                float(tumor[k].mean()),
                float(area),
                prob is not None,
                None if prob is None else float(prob),
                strong,
            )
        )
    return out
