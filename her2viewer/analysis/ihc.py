"""Rule-based HER2 IHC scoring (ASCO/CAP 2018 breast, Hofmann gastric).

The slide is read at 20x and cut into small square *cell regions* (32 um, a few
tumor cells each). In each region with dense nuclei (a tumor-cell region) the
membrane DAB intensity is the 95th percentile of DAB optical density outside the
nuclei (which keeps hematoxylin crosstalk out of the measure), classed as
none / faint / weak-moderate / strong, and the staining is *complete* when DAB
encloses cell-sized unstained areas (membranes stained all around the cell)
over at least ``completeness`` of the region. Each region gets one category:

0 negative, 1 faint or incomplete, 2 weak-moderate complete, 3 strong complete.

Percentages are of tumor-cell regions. Breast (ASCO/CAP 2018): 3+ when strong
complete in >10%, 2+ when at least weak-moderate complete in >10%, 1+ when any
membrane staining in >10%, else 0. Gastric resection (Hofmann 2008): the same
with >=10% and lateral/basolateral (U-shaped) staining counted as complete.
Gastric biopsy: the highest category found in a cluster of >=5 tumor cells,
whatever its percentage. 2+ and 3+ are HER2 positive as in the seed studies;
2+ is flagged equivocal and ISH is recommended.

A slide with no tissue, or no tumor-cell region in its tissue, is *not evaluable*
(status ``not_evaluable``, with the reason): it never gets a negative call.

With a region (:class:`~her2viewer.annotations.roi.Region`, e.g. the Tumor annotations)
only the tissue pixels inside it are measured and only the cell regions whose centre lies
inside it are scored; the result names the region and its area.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import cv2
import numpy as np
from scipy import ndimage

from her2viewer.analysis.contract import load_npz, save_npz
from her2viewer.annotations.roi import Region, region_summary, summary_region
from her2viewer.errors import StainError
from her2viewer.jobs import JobContext
from her2viewer.overlay.layers import MaskLayer
from her2viewer.slide import Slide
from her2viewer.stain import (
    HDAB,
    DabMeasures,
    DabThresholds,
    dab_measures,
    estimate_stain_matrix,
    merge_measures,
    separate_stains,
    stain_matrix,
    tissue_pixels,
)
from her2viewer.tissue import PRESETS, PatchGrid, make_patch_grid, segment_tissue

CATEGORIES = ("negative", "faint_incomplete", "weak_moderate_complete", "strong_complete")
#: Category-map value for pixels that are not tumor-cell regions.
NOT_TUMOR = 255
GUIDELINES = ("breast", "gastric_resection", "gastric_biopsy")
#: Pixel size of the analysis (20x); also assumed for images without a recorded pixel size.
ANALYSIS_MPP = 0.5
#: Cell regions per side of one processed tile.
TILE_REGIONS = 32
THUMBNAIL_SIZE = 2048
#: Stain vectors are estimated at 4x downsample or coarser: colours of full-resolution
#: JPEG tiles are smeared by chroma subsampling.
ESTIMATION_DOWNSAMPLE = 4
#: Tissue detection on IHC: a low saturation threshold, because the hematoxylin
#: counterstain of IHC can be much paler than H&E.
IHC_TISSUE = PRESETS["ihc"]
#: Status of a slide with nothing to score (no tissue, or no tumor-cell region).
NOT_EVALUABLE = "not_evaluable"
#: Colours of the score categories (negative .. strong complete), browns getting darker.
CATEGORY_COLORS = {1: (120, 150, 200), 2: (240, 200, 120), 3: (200, 120, 40), 4: (120, 50, 10)}


class NotEvaluableError(StainError):
    """A slide has nothing to score (no tissue or no tumor); the message says which."""


@dataclass(frozen=True)
class IhcRules:
    """Cut-offs of the rule-based score; every value is configurable.

    Attributes
    ----------
    guideline : str
        ``breast`` (ASCO/CAP 2018), ``gastric_resection`` or ``gastric_biopsy`` (Hofmann).
    faint, moderate, strong : float
        Membrane DAB OD (95th percentile in a region) at which staining counts
        as faint, weak-moderate and strong.
    completeness : float
        Fraction of a region enclosed by stained membrane for *complete* staining.
    percent : float
        Percentage of tumor cells that decides a score (10).
    region_um : float
        Side of a cell region in micrometres.
    nucleus_od, cellularity : float
        A region is a tumor-cell region when at least ``cellularity`` of its pixels
        have hematoxylin OD >= ``nucleus_od``.
    cell_area_um2 : float
        Area of one tumor cell, for the biopsy cluster rule.
    min_cluster_cells : int
        Cells in a cluster for the gastric biopsy rule (5).
    """

    guideline: str = "breast"
    faint: float = 0.05
    moderate: float = 0.12
    strong: float = 0.30
    completeness: float = 0.10
    percent: float = 10.0
    region_um: float = 32.0
    nucleus_od: float = 0.12
    cellularity: float = 0.14
    cell_area_um2: float = 150.0
    min_cluster_cells: int = 5

    def __post_init__(self) -> None:
        if self.guideline not in GUIDELINES:
            raise StainError(
                f"Unknown guideline {self.guideline!r}; choose one of {', '.join(GUIDELINES)}."
            )
        if not 0 < self.faint < self.moderate < self.strong:
            raise StainError("Membrane cut-offs must increase: 0 < faint < moderate < strong.")
        if not 0 < self.percent < 100 or not 0 < self.completeness < 1:
            raise StainError("percent must be in (0, 100) and completeness in (0, 1).")

    @classmethod
    def for_guideline(cls, guideline: str, **overrides) -> IhcRules:
        """Return the rules of a guideline; gastric counts U-shaped staining as complete."""
        rules = cls(guideline=guideline, **overrides)
        if guideline.startswith("gastric") and "completeness" not in overrides:
            rules = replace(rules, completeness=rules.completeness / 2)
        return rules


@dataclass
class IhcScore:
    """Result of :func:`score_ihc`.

    Attributes
    ----------
    score : int or None
        0..3; None when the slide is not evaluable.
    status : str
        ``positive`` (2+/3+), ``negative``, or :data:`NOT_EVALUABLE`.
    equivocal : bool
        True for 2+ (ISH recommended).
    percentages : dict
        Percent of tumor-cell regions per category (:data:`CATEGORIES`).
    dab : DabMeasures
        Pixel DAB measures over tissue pixels.
    category_map : numpy.ndarray
        uint8 category per cell region, :data:`NOT_TUMOR` elsewhere.
    map_downsample : float
        Level-0 pixels per category-map pixel.
    stain_matrix : numpy.ndarray
        The stain matrix used.
    reason : str
        Why the slide is not evaluable; empty when it is.
    roi : dict
        The region scored and its area (:func:`~her2viewer.annotations.roi.region_summary`).
    """

    score: int | None
    status: str
    equivocal: bool
    guideline: str
    percentages: dict
    dab: DabMeasures
    category_map: np.ndarray = field(repr=False)
    map_downsample: float
    stain_matrix: np.ndarray = field(repr=False)
    n_tumor_regions: int
    reason: str = ""
    roi: dict = field(default_factory=dict)

    @property
    def evaluable(self) -> bool:
        """Whether the slide had tumor to score."""
        return self.status != NOT_EVALUABLE

    @property
    def label(self) -> str:
        """``0``, ``1+``, ``2+``, ``3+`` or ``not evaluable``."""
        if not self.evaluable:
            return "not evaluable"
        return f"{self.score}+" if self.score else "0"

    @property
    def recommendation(self) -> str:
        """What to do next, in words."""
        if not self.evaluable:
            return f"not evaluable, no HER2 status given: {self.reason}"
        if self.equivocal:
            return "equivocal (IHC 2+): reflex ISH recommended"
        return f"HER2 {self.status} by IHC {self.score}+" if self.score else "HER2 negative (0)"

    def to_json_dict(self) -> dict:
        """Return the result without the map, as JSON-serialisable data."""
        return {
            "score": self.score,
            "score_label": self.label,
            "status": self.status,
            "reason": self.reason or None,
            "equivocal": self.equivocal,
            "recommendation": self.recommendation,
            "guideline": self.guideline,
            "percentages": self.percentages,
            "n_tumor_regions": self.n_tumor_regions,
            "dab": asdict(self.dab),
            "stain_matrix": self.stain_matrix.tolist(),
            "map_downsample": self.map_downsample,
            **self.roi,
        }


# --------------------------------------------------------------------------------------
# Per-region measures
# --------------------------------------------------------------------------------------
def _blocks(values: np.ndarray, side: int) -> np.ndarray:
    rows, cols = values.shape[0] // side, values.shape[1] // side
    crop = values[: rows * side, : cols * side]
    return crop.reshape(rows, side, cols, side).transpose(0, 2, 1, 3).reshape(rows, cols, -1)


def _enclosed(membrane: np.ndarray, max_area: float) -> np.ndarray:
    """Unstained pixels in components smaller than ``max_area``: cells ringed by membrane."""
    labels, count = ndimage.label(~membrane)
    if count == 0:
        return np.zeros_like(membrane)
    sizes = np.bincount(labels.ravel())
    small = sizes <= max_area
    small[0] = False
    return small[labels]


def region_categories(stains: np.ndarray, rules: IhcRules, side: int, cell_px: float) -> np.ndarray:
    """Classify the cell regions of one tile of separated stains.

    Parameters
    ----------
    stains : numpy.ndarray
        ``(h, w, 3)`` output of :func:`~her2viewer.stain.separate_stains` (H, DAB, residual).
    rules : IhcRules
        Cut-offs.
    side : int
        Region side in pixels.
    cell_px : float
        Area of one cell in pixels (largest enclosed area is four cells).

    Returns
    -------
    numpy.ndarray
        ``(h // side, w // side)`` uint8 categories, :data:`NOT_TUMOR` outside tumor.
    """
    hema, dab = stains[..., 0], stains[..., 1]
    nuclei = hema >= rules.nucleus_od
    intensity = np.percentile(_blocks(np.where(nuclei, 0.0, dab), side), 95, axis=-1)
    membrane = dab >= rules.faint / 2
    enclosed = _blocks(_enclosed(membrane, 4 * cell_px), side).mean(axis=-1)
    tumor = _blocks(nuclei, side).mean(axis=-1) >= rules.cellularity
    level = np.digitize(intensity, [rules.faint, rules.moderate, rules.strong])
    complete = enclosed >= rules.completeness
    category = np.where(level == 0, 0, np.where(complete & (level >= 2), level, 1))
    return np.where(tumor, category, NOT_TUMOR).astype(np.uint8)


# --------------------------------------------------------------------------------------
# Rules
# --------------------------------------------------------------------------------------
def category_percentages(category_map: np.ndarray) -> dict:
    """Percent of tumor-cell regions in each category."""
    counts = np.bincount(category_map[category_map != NOT_TUMOR].ravel(), minlength=4)[:4]
    total = max(int(counts.sum()), 1)
    return {name: 100.0 * float(c) / total for name, c in zip(CATEGORIES, counts, strict=True)}


def _largest_cluster(mask: np.ndarray) -> int:
    labels, count = ndimage.label(mask, structure=np.ones((3, 3)))
    return int(np.bincount(labels.ravel())[1:].max()) if count else 0


def apply_rules(category_map: np.ndarray, rules: IhcRules, cells_per_region: float) -> int:
    """Return the IHC score 0..3 of a category map under ``rules.guideline``."""
    if rules.guideline == "gastric_biopsy":
        needed = max(1, math.ceil(rules.min_cluster_cells / max(cells_per_region, 1e-6)))
        tumor = category_map != NOT_TUMOR
        for score in (3, 2, 1):
            if _largest_cluster(tumor & (category_map >= score)) >= needed:
                return score
        return 0
    pct = category_percentages(category_map)
    at_least = [sum(pct[name] for name in CATEGORIES[k:]) for k in range(4)]
    passes = (
        (lambda p: p >= rules.percent)
        if rules.guideline == "gastric_resection"
        else (lambda p: p > rules.percent)
    )
    return next((k for k in (3, 2, 1) if passes(at_least[k])), 0)


# --------------------------------------------------------------------------------------
# Slides and images
# --------------------------------------------------------------------------------------
def _analysis_downsample(slide: Slide) -> float:
    """Level-0 px per analysis px for 20x (0.5 um/px); 1 for coarser slides."""
    return max(1.0, ANALYSIS_MPP / (slide.info.mpp_x or ANALYSIS_MPP))


def slide_stain_matrix(slide: Slide) -> np.ndarray:
    """Hematoxylin vector estimated on the slide (Macenko), reference DAB vector.

    The DAB vector is kept at its reference so that slides with little or no DAB
    are measured on the same scale; the hematoxylin estimate removes the
    counterstain's crosstalk into DAB. The estimate uses a downsampled image
    (4x or coarser), whose colours JPEG chroma subsampling has not smeared.
    """
    side = max(slide.info.width, slide.info.height) // ESTIMATION_DOWNSAMPLE
    try:
        image = slide.thumbnail(int(np.clip(side, 256, THUMBNAIL_SIZE)))
        estimate = estimate_stain_matrix(image, HDAB, max_deviation=15)
    except StainError:
        return HDAB
    return stain_matrix(estimate[0], HDAB[1])


def tissue_tile_grid(slide: Slide, magnification: float, tile: int) -> PatchGrid:
    """The non-overlapping ``tile`` px tiles at ``magnification`` that touch IHC tissue.

    Raises
    ------
    NotEvaluableError
        When no tile touches tissue: there is nothing to score.
    """
    tissue = segment_tissue(slide, IHC_TISSUE)
    grid = make_patch_grid(slide, tissue, magnification, tile, max_background=None)
    if len(grid.coords) == 0:
        name = os.path.basename(slide.info.path)
        raise NotEvaluableError(f"no tissue tile was found in {name}")
    return grid


def _read_scaled(slide: Slide, x: int, y: int, size0: int, out: int) -> np.ndarray:
    level = slide.best_level_for_downsample(size0 / out)
    ds = slide.info.levels[level].downsample
    side = max(1, round(size0 / ds))
    rgb = slide.read_region((x, y), level, (side, side))
    return rgb if side == out else cv2.resize(rgb, (out, out), interpolation=cv2.INTER_AREA)


def _tissue_tiles(
    slide: Slide, rows: int, cols: int, tile0: float, region: Region | None = None
) -> list[tuple[int, int]]:
    """Tiles (row, col) that touch tissue (and the region); every tile (touching the region)
    when no tissue is detected (small images)."""
    tissue = segment_tissue(slide, IHC_TISSUE)
    everything = [(r, c) for r in range(rows) for c in range(cols)]
    if region is not None:
        boxes = [(c * tile0, r * tile0, (c + 1) * tile0, (r + 1) * tile0) for r, c in everything]
        everything = [
            t for t, hit in zip(everything, region.intersects_boxes(boxes), strict=True) if hit
        ]
    if not tissue.mask.any():
        return everything
    step = tile0 / tissue.downsample
    return [
        (r, c)
        for r, c in everything
        if tissue.mask[
            int(r * step) : math.ceil((r + 1) * step), int(c * step) : math.ceil((c + 1) * step)
        ].any()
    ]


def _tissue_inside(rgb: np.ndarray, inside: np.ndarray | None) -> np.ndarray | None:
    """Tissue pixels of a tile (inside the region), or None when under 1% of it is tissue."""
    tissue = tissue_pixels(rgb)
    if inside is not None:
        tissue &= inside
    share = tissue.sum() / max(1, tissue.size if inside is None else inside.sum())
    return tissue if share >= 0.01 else None


def score_ihc(
    slide: Slide,
    rules: IhcRules | None = None,
    thresholds: DabThresholds | None = None,
    matrix: np.ndarray | None = None,
    region: Region | None = None,
) -> IhcScore:
    """Score a HER2 IHC slide or image by the guideline rules.

    Parameters
    ----------
    slide : Slide
        An open IHC slide or plain image (:func:`her2viewer.slide.open_slide`);
        images without a pixel size are taken as 20x (0.5 um/px).
    rules : IhcRules, optional
        Guideline and cut-offs (breast ASCO/CAP 2018 defaults).
    thresholds : DabThresholds, optional
        Pixel DAB cut-offs of the reported ``dab`` measures (0.2/0.4/0.6).
    matrix : numpy.ndarray, optional
        Stain matrix; by default the reference H-DAB vectors (:data:`HDAB`), as
        QuPath does; :func:`slide_stain_matrix` gives a per-slide estimate.
    region : Region, optional
        Score only inside it (level-0 pixels of this slide); the whole slide by default.

    Returns
    -------
    IhcScore

    Raises
    ------
    RoiError
        When the region lies outside the slide.
    """
    rules = rules or IhcRules()
    matrix = HDAB if matrix is None else matrix
    region = region.on_slide(slide.info) if region is not None else None
    ds = _analysis_downsample(slide)
    mpp = (slide.info.mpp_x or ANALYSIS_MPP) * ds
    side = max(4, round(rules.region_um / mpp))
    cell_px = rules.cell_area_um2 / mpp**2
    tile = side * TILE_REGIONS
    tile0 = tile * ds
    rows = math.ceil(slide.info.height / tile0)
    cols = math.ceil(slide.info.width / tile0)
    category = np.full((rows * TILE_REGIONS, cols * TILE_REGIONS), NOT_TUMOR, np.uint8)
    measures = []
    for r, c in _tissue_tiles(slide, rows, cols, tile0, region):
        x, y = round(c * tile0), round(r * tile0)
        rgb = _read_scaled(slide, x, y, round(tile0), tile)
        inside = None if region is None else region.mask((tile, tile), ds, (x, y))
        tissue = _tissue_inside(rgb, inside)
        if tissue is None:
            continue
        stains = separate_stains(rgb, matrix)
        rs, cs = r * TILE_REGIONS, c * TILE_REGIONS
        category[rs : rs + TILE_REGIONS, cs : cs + TILE_REGIONS] = region_categories(
            stains, rules, side, cell_px
        )
        measures.append(dab_measures(stains[..., 1], tissue, thresholds))
    map_rows = math.ceil(slide.info.height / (side * ds))
    map_cols = math.ceil(slide.info.width / (side * ds))
    category = category[:map_rows, :map_cols]
    if region is not None:
        category[~region.mask(category.shape, side * ds)] = NOT_TUMOR
    reason = _not_evaluable_reason(slide, measures, category, region)
    score = None if reason else apply_rules(category, rules, side * side / cell_px)
    status = NOT_EVALUABLE if reason else "positive" if score >= 2 else "negative"
    result = IhcScore(
        score=score,
        status=status,
        equivocal=score == 2,
        guideline=rules.guideline,
        percentages=category_percentages(category),
        dab=merge_measures(measures),
        category_map=category,
        map_downsample=float(side * ds),
        stain_matrix=np.asarray(matrix),
        n_tumor_regions=int((category != NOT_TUMOR).sum()),
        reason=reason,
        roi=region_summary(region, slide.info.mpp_x),
    )
    _require_finite(result, slide)
    return result


def _not_evaluable_reason(
    slide: Slide, measures: list, category: np.ndarray, region: Region | None
) -> str:
    """Why there is nothing to score (no tissue, no tumor-cell region), or ``""``."""
    name = os.path.basename(slide.info.path)
    where = f"inside the region ({region.description}) of {name}" if region else f"in {name}"
    if not measures:
        return f"no tissue {where}" if region else f"no tissue was found {where}"
    if not (category != NOT_TUMOR).any():
        return f"no tumor-cell regions were found in the tissue {where}"
    return ""


def _require_finite(result: IhcScore, slide: Slide) -> None:
    """Refuse a result whose numbers are NaN or infinite: an error, never a class."""
    numbers = [*result.percentages.values(), *asdict(result.dab).values()]
    if not (np.all(np.isfinite(numbers)) and np.all(np.isfinite(result.stain_matrix))):
        raise StainError(
            f"Scoring {os.path.basename(slide.info.path)} gave NaN or infinite values "
            "(a damaged image or an unusable stain matrix), so no score can be given."
        )


# --------------------------------------------------------------------------------------
# The analysis contract
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class IhcOptions:
    """Options of :func:`analyse_ihc`.

    Attributes
    ----------
    rules : IhcRules
        Guideline and cut-offs (breast ASCO/CAP 2018 by default).
    thresholds : DabThresholds, optional
        Pixel DAB cut-offs of the reported ``dab`` measures.
    estimate_stains : bool
        Estimate the hematoxylin vector on the slide (:func:`slide_stain_matrix`)
        instead of the reference H-DAB vectors.
    region : Region, optional
        Score only inside this region (level-0 pixels of the IHC slide).
    """

    rules: IhcRules = field(default_factory=IhcRules)
    thresholds: DabThresholds | None = None
    estimate_stains: bool = False
    region: Region | None = None


@dataclass
class IhcResult(IhcScore):
    """The IHC score of one slide (:class:`IhcScore`) with its layer and files."""

    def layers(self) -> list[MaskLayer]:
        """The score categories of the tumor-cell regions as a mask layer (level-0 geometry)."""
        labels = np.where(self.category_map == NOT_TUMOR, 0, self.category_map + 1)
        return [
            MaskLayer(
                "HER2 score categories",
                labels=labels.astype(np.uint8),
                downsample=self.map_downsample,
                class_names={i + 1: name for i, name in enumerate(CATEGORIES)},
                colors=CATEGORY_COLORS,
                opacity=0.5,
            )
        ]

    def summary(self) -> dict:
        """JSON-ready figures: what ``ihc score --json`` prints (no map)."""
        return self.to_json_dict()

    def save(self, path: str | Path) -> Path:
        """Write the result to one ``.npz`` file, atomically (an :class:`OutputError` if not)."""
        return save_npz(path, self.summary(), category_map=self.category_map)

    @classmethod
    def load(cls, path: str | Path) -> IhcResult:
        """Read a result written by :meth:`save` (a :class:`ModelError` when unreadable)."""
        summary, arrays = load_npz(path, "IHC score")
        return cls.from_summary(summary, arrays["category_map"])

    @classmethod
    def from_summary(cls, summary: dict, category_map: np.ndarray) -> IhcResult:
        """Rebuild a result from its :meth:`summary` and category map."""
        kept = {f.name: summary[f.name] for f in fields(cls) if f.name in summary}
        kept["dab"] = DabMeasures(**summary["dab"])
        kept["stain_matrix"] = np.asarray(summary["stain_matrix"])
        kept["reason"] = summary["reason"] or ""
        kept["roi"] = summary_region(summary)
        return cls(**kept, category_map=category_map)


def analyse_ihc(
    slide: Slide,
    bundle: None = None,
    options: IhcOptions | None = None,
    context: JobContext | None = None,
) -> IhcResult:
    """Score a HER2 IHC slide by the guideline rules (:func:`score_ihc`).

    Parameters
    ----------
    slide : Slide
        An open IHC slide or plain image.
    bundle : None
        The rules need no model; present for the common contract.
    options : IhcOptions, optional
        Rules, DAB thresholds and the stain matrix choice.
    context : JobContext, optional
        Progress and cancellation of a background job.
    """
    options = options or IhcOptions()
    if context is not None:
        context.report(0, 1, "scoring")
    matrix = slide_stain_matrix(slide) if options.estimate_stains else None
    score = score_ihc(slide, options.rules, options.thresholds, matrix, options.region)
    if context is not None:
        context.report(1, 1, "scoring")
    return IhcResult(**vars(score))
