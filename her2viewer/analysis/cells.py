"""Cell-by-cell scoring of an IHC slide: HER2 membranes, ER/PR/Ki67 nuclei (issue 18).

:func:`analyse_cells` reads the slide at 0.5 um/px (the level nearest it, downsampled as
needed), estimates the stain vectors on the slide (:func:`~her2viewer.analysis.ihc.
slide_stain_matrix`), and runs the cell engine (:mod:`her2viewer.cells.engine`) over the
tiles with tissue, or over the tiles touching a region (the Tumor annotations), keeping the
cells whose centre lies inside it. Every kept cell is a tumor cell: with no region every
detected cell counts and the result says so. The guideline of the marker
(:mod:`her2viewer.cells.rules`) then gives the category, and the result offers the cells as
overlay layers (dots by class at high zoom, a density map of positive cells at low zoom), a
cell table (CSV, Parquet) and QuPath GeoJSON cells (``objectType`` cell, ``nucleusGeometry``).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, fields
from pathlib import Path

import cv2
import numpy as np
from shapely.geometry import Point, Polygon

from her2viewer.analysis.contract import load_npz, save_npz
from her2viewer.analysis.ihc import IHC_TISSUE, slide_stain_matrix
from her2viewer.annotations.roi import Region, region_summary
from her2viewer.cells.detect import load_detector
from her2viewer.cells.engine import (
    CLASS_NAMES,
    KI67_METHODS,
    TILE_PX,
    Cells,
    class_of_cells,
    decide,
    detect_cell_shapes,
    margin_px,
)
from her2viewer.cells.measure import CellOutlines, CellTable
from her2viewer.cells.profiles import MARKERS, ScoringProfile, load_profile
from her2viewer.errors import Her2ViewerError
from her2viewer.geometry.geojson import Feature, write_features
from her2viewer.geometry.shapes import repair
from her2viewer.jobs import JobContext
from her2viewer.models.checks import apply_pixel_size
from her2viewer.outputs import atomic_output
from her2viewer.overlay.points import DensityLayer, PointsLayer
from her2viewer.slide import Slide
from her2viewer.stats.style import PALETTE
from her2viewer.tables import write_csv
from her2viewer.tissue import segment_tissue

#: Pixel size the cells are found at (20x); finer slides are downsampled to it.
ANALYSIS_MPP = 0.5
SITES = ("breast", "gastric")
SPECIMENS = ("resection", "biopsy")
#: Class colours: 0 blue, 1+ yellow, 2+ orange, 3+ red.
CLASS_COLORS = {0: (40, 90, 230), 1: (250, 220, 40), 2: (245, 140, 30), 3: (215, 25, 25)}
#: The colour-blind-safe alternative (Okabe-Ito: sky blue, yellow, orange, vermillion).
SAFE_COLORS = {0: PALETTE[5], 1: PALETTE[6], 2: PALETTE[4], 3: PALETTE[1]}
#: Side of one density-map cell (um) and the zoom (screen um/px) up to which dots replace it.
DENSITY_UM = 50.0
DOTS_UP_TO_UM_PER_PX = 2.0
#: The zoom (screen um/px) from which nucleus outlines replace the dots (20x).
OUTLINES_FROM_UM_PER_PX = 0.5
NO_REGION = "no tumor region: all detected cells counted"


class CellsError(Her2ViewerError):
    """A slide the cells cannot be found on (no pixel size, bad options)."""


@dataclass(frozen=True)
class CellsOptions:
    """Options of :func:`analyse_cells`.

    Attributes
    ----------
    marker : str
        her2, er, pr or ki67.
    profile : str or ScoringProfile, optional
        A built-in profile name, a saved profile's JSON path, or a profile (the panel's
        sliders); the marker's default when None.
    mpp : float, optional
        Pixel size (um/px) for images that record none; wins over the file's.
    region : Region, optional
        Count only the cells inside it (level-0 pixels).
    tumor_site, specimen : str
        HER2 guideline: breast or gastric; resection or biopsy (gastric cluster rule).
    ki67_method : str
        Ki67: "global" (every tumor cell) or "hot-spot" (the densest 0.2 mm² circle, at
        least 500 cells; IKWG 2021).
    model : str, optional
        A TorchScript or ONNX nucleus model instead of the classical detector.
    score : bool
        Apply the guideline (``cells score``); False only detects and classes.
    outlines : bool
        Trace nucleus and cell outlines (for GeoJSON).
    device : str
        Device of a TorchScript model.
    workers, tile : int
        Tile threads and core tile side (analysis pixels).
    stain_matrix : numpy.ndarray, optional
        Stain vectors already estimated on this slide (the panel's live preview); estimated
        on the slide when None.
    """

    marker: str = "her2"
    profile: str | ScoringProfile | None = None
    mpp: float | None = None
    region: Region | None = None
    tumor_site: str = "breast"
    specimen: str = "resection"
    ki67_method: str = "global"
    model: str | None = None
    score: bool = True
    outlines: bool = True
    device: str = "cpu"
    workers: int = 2
    tile: int = TILE_PX
    stain_matrix: np.ndarray | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        for name, value, allowed in (
            ("marker", self.marker, MARKERS),
            ("tumor site", self.tumor_site, SITES),
            ("specimen", self.specimen, SPECIMENS),
            ("Ki67 method", self.ki67_method, KI67_METHODS),
        ):
            if value not in allowed:
                raise CellsError(f"Unknown {name} {value!r}; choose one of {', '.join(allowed)}.")

    def scoring_profile(self) -> ScoringProfile:
        """The profile to use (a :class:`ProfileError` in one sentence when unusable)."""
        if not isinstance(self.profile, ScoringProfile):
            return load_profile(self.profile, self.marker)
        if self.profile.marker != self.marker:
            raise CellsError(
                f"Scoring profile {self.profile.name!r} is for {self.profile.marker}, "
                f"not {self.marker}."
            )
        return self.profile


@dataclass
class CellsResult:
    """The cells of one slide (level-0 coordinates), their classes and the guideline's call.

    Attributes
    ----------
    cells : Cells
        The counted (tumor) cells, ``x``/``y`` in level-0 pixels, ``mpp`` of level 0.
    outlines : CellOutlines
        Nucleus and cell outlines per cell (level 0); empty when not traced.
    info : dict
        Everything :meth:`summary` says besides the counts (profile, region, detector...).
    slide_size : tuple of int
        Level-0 ``(width, height)``, for the density map.
    """

    cells: Cells
    outlines: CellOutlines
    info: dict
    slide_size: tuple[int, int]
    decision: dict | None = field(default=None)

    @property
    def class_names(self) -> tuple[str, ...]:
        """The per-cell class names of the marker."""
        return CLASS_NAMES[self.cells.marker]

    def counts(self) -> dict[str, int]:
        """Cells per class name."""
        return dict(zip(self.class_names, map(int, self.cells.counts()), strict=True))

    def summary(self) -> dict:
        """JSON-ready figures: what ``cells score --json`` prints."""
        n = len(self.cells)
        positive = int((self.cells.classes >= 1).sum())
        counts = self.counts()
        out = {
            "marker": self.cells.marker,
            "n_cells": n,
            "n_positive": positive,
            "positive_percent": round(100.0 * positive / n, 3) if n else 0.0,
            "class_counts": counts,
            "class_percent": {k: round(100.0 * v / n, 3) if n else 0.0 for k, v in counts.items()},
            **self.info,
        }
        if self.decision is not None:
            d = self.decision
            out.update(
                category=d["category"],
                label=d["label"],
                rule=d["rule"],
                citation=d["citation"],
                percentages=d["percentages"],
                figures=d["figures"],
            )
            out.update({k: d["figures"][k] for k in ("h_score", "allred") if k in d["figures"]})
        return out

    def layers(self) -> list:
        """Dots by class at high zoom, the density of positive cells at low zoom."""
        table = self.cells.table
        xy = np.column_stack([table.x, table.y])
        dots_up_to = DOTS_UP_TO_UM_PER_PX / self.cells.mpp
        names = {i: name for i, name in enumerate(self.class_names)}
        return [
            DensityLayer(
                f"Positive cells per mm² ({self.cells.marker.upper()})",
                **density_map(self.cells, self.slide_size),
                min_downsample=dots_up_to,
                units="cells/mm²",
            ),
            PointsLayer(
                f"Cells ({self.cells.marker.upper()})",
                xy=xy,
                classes=self.cells.classes,
                colors=dict(CLASS_COLORS),
                class_names=names,
                describe=self.describe_cell,
                radius_um=3.0,
                mpp=self.cells.mpp,
                max_downsample=dots_up_to,
                opacity=0.9,
                **self._nucleus_outlines(),
            ),
        ]

    def _nucleus_outlines(self) -> dict:
        """The points layer's nucleus outlines (drawn from 20x up), when they were traced."""
        if len(self.outlines) != len(self.cells):
            return {}
        return {
            "outline_xy": self.outlines.nucleus_xy,
            "outline_offsets": self.outlines.nucleus_offsets,
            "outline_up_to": OUTLINES_FROM_UM_PER_PX / self.cells.mpp,
        }

    def reclassed(self, profile: ScoringProfile) -> CellsResult:
        """The same cells classed (and scored) by ``profile``'s thresholds, without measuring
        again: right when only the moderate/strong thresholds changed, or for nuclear markers
        (HER2 membrane completeness is measured at the weak threshold)."""
        tumor_site, specimen = self.info["tumor_site"], self.info["specimen"]
        classes = class_of_cells(self.cells.table, profile, lateral=tumor_site == "gastric")
        cells = Cells(self.cells.table, classes, self.cells.marker, self.cells.mpp)
        info = {**self.info, "profile": profile.name, "thresholds": profile.thresholds.model_dump()}
        method = self.info.get("ki67_method", "global")
        decision = None
        if self.decision is not None:
            decision = decide(cells, tumor_site, specimen, method).to_dict()
        return CellsResult(cells, self.outlines, info, self.slide_size, decision)

    def describe_cell(self, row: int) -> str:
        """One cell's class and measurements, as the cursor readout shows them."""
        t = self.cells.table
        text = (
            f"{self.class_names[self.cells.classes[row]]}: nucleus {t.nucleus_area[row]:.0f} um², "
            f"DAB nucleus {t.dab_nucleus[row]:.2f}"
        )
        if self.cells.marker == "her2":
            text += (
                f", membrane {t.dab_membrane_stained[row]:.2f}, "
                f"{100 * t.membrane_completeness[row]:.0f}% complete"
            )
        return text

    def scores(self) -> np.ndarray:
        """The per-cell value the thresholds class: stained-membrane DAB (HER2), else the
        nucleus' mean DAB."""
        table = self.cells.table
        return table.dab_membrane_stained if self.cells.marker == "her2" else table.dab_nucleus

    # -- files ------------------------------------------------------------------------------
    def table_columns(self) -> dict[str, np.ndarray]:
        """The cell table: id, class, class name, then every measurement (x/y level-0 px)."""
        classes = self.cells.classes.astype(np.int64)
        return {
            "cell": np.arange(len(self.cells)),
            "class": classes,
            "class_name": np.array(self.class_names, dtype=object)[classes],
            **self.cells.table.columns(),
        }

    def write_table(self, path: str | Path) -> Path:
        """Write the cell table: Parquet for ``.parquet``, else formula-escaped CSV."""
        columns = self.table_columns()
        if Path(path).suffix.lower() == ".parquet":
            return _write_parquet(path, columns)
        rows = zip(*(_plain(v) for v in columns.values()), strict=True)
        return write_csv(path, list(columns), rows)

    def features(self) -> list[Feature]:
        """The cells as QuPath cell objects: cell outline, nucleus outline, class, measurements."""
        if len(self.outlines) != len(self.cells):
            raise CellsError("This cells result has no outlines; run it again to export cells.")
        table = self.cells.table.columns()
        out = []
        for row in range(len(self.cells)):
            name = self.class_names[self.cells.classes[row]]
            out.append(
                Feature(
                    geometry=_shape(self.outlines.cell(row), table, row),
                    object_type="cell",
                    class_name=name,
                    color=CLASS_COLORS[int(self.cells.classes[row])],
                    measurements={k: float(v[row]) for k, v in table.items()},
                    nucleus=_shape(self.outlines.nucleus(row), table, row),
                )
            )
        return out

    def write_geojson(self, path: str | Path) -> Path:
        """Write the cells as a QuPath GeoJSON FeatureCollection, atomically."""
        write_features(path, self.features())
        return Path(path)

    def save(self, path: str | Path) -> Path:
        """Write the result to one ``.npz`` file, atomically."""
        arrays = {f"table_{k}": v for k, v in self.cells.table.columns().items()}
        arrays.update({f"outlines_{f.name}": getattr(self.outlines, f.name) for f in
                       fields(CellOutlines)})  # fmt: skip
        meta = {
            "summary": self.summary(),
            "info": self.info,
            "decision": self.decision,
            "slide_size": list(self.slide_size),
            "mpp": self.cells.mpp,
        }
        return save_npz(path, meta, classes=self.cells.classes, **arrays)

    @classmethod
    def load(cls, path: str | Path) -> CellsResult:
        """Read a result written by :meth:`save` (a :class:`ModelError` when unreadable)."""
        meta, arrays = load_npz(path, "cells")
        table = CellTable(**{f.name: arrays[f"table_{f.name}"] for f in fields(CellTable)})
        outlines = CellOutlines(**{f.name: arrays[f"outlines_{f.name}"] for f in
                                   fields(CellOutlines)})  # fmt: skip
        marker = meta["summary"]["marker"]
        cells = Cells(table, arrays["classes"], marker, meta["mpp"])
        return cls(cells, outlines, meta["info"], tuple(meta["slide_size"]), meta["decision"])


def _plain(values: np.ndarray) -> list:
    """Numbers as Python numbers (floats rounded to 6 significant digits) for a CSV."""
    if values.dtype.kind == "f":
        return [float(f"{v:.6g}") for v in values]
    return values.tolist()


def _write_parquet(path: str | Path, columns: dict[str, np.ndarray]) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({k: (v.astype(str) if v.dtype == object else v) for k, v in columns.items()})
    with atomic_output(path) as tmp:
        pq.write_table(table, tmp)
    return Path(path)


def _shape(ring: np.ndarray, table: dict, row: int):
    """A polygon of an outline; a point at the centre when the outline is degenerate."""
    if len(ring) >= 3:
        polygon = repair(Polygon(ring))
        if not polygon.is_empty and polygon.area > 0:
            return polygon
    return Point(float(table["x"][row]), float(table["y"][row]))


def density_map(cells: Cells, slide_size: tuple[int, int]) -> dict:
    """Positive cells per mm² on a :data:`DENSITY_UM` grid (NaN where there are no cells).

    Returns the keyword arguments of a heatmap layer: ``values``, ``downsample``, ``vmax``.
    """
    step = DENSITY_UM / cells.mpp
    shape = (max(1, math.ceil(slide_size[1] / step)), max(1, math.ceil(slide_size[0] / step)))
    rows = np.clip((cells.table.y / step).astype(np.int64), 0, shape[0] - 1)
    cols = np.clip((cells.table.x / step).astype(np.int64), 0, shape[1] - 1)
    every = np.zeros(shape, np.float32)
    np.add.at(every, (rows, cols), 1)
    positive = np.zeros(shape, np.float32)
    chosen = cells.classes >= 1
    np.add.at(positive, (rows[chosen], cols[chosen]), 1)
    per_mm2 = positive / (DENSITY_UM / 1000.0) ** 2
    values = np.where(every > 0, per_mm2, np.nan).astype(np.float32)
    top = float(np.nanpercentile(values, 99)) if np.isfinite(values).any() else 0.0
    return {"values": values, "downsample": float(step), "vmax": max(top, 1.0)}


# -- the analysis -----------------------------------------------------------------------------
def _pixel_size(slide: Slide) -> float:
    mpp = slide.info.mpp_x
    if not mpp:
        name = os.path.basename(slide.info.path)
        raise CellsError(
            f"{name} records no pixel size; give it with --mpp (e.g. --mpp 0.5 for 20x)."
        )
    return float(mpp)


def slide_reader(slide: Slide, downsample: float):
    """``read(x, y, w, h)`` of RGB at ``downsample`` (analysis pixels), from the nearest
    finer level; areas outside the slide are white."""
    level = slide.best_level_for_downsample(downsample)
    level_ds = slide.info.levels[level].downsample

    def read(x: int, y: int, w: int, h: int) -> np.ndarray:
        x0, y0 = round(x * downsample), round(y * downsample)
        size = (max(1, round(w * downsample / level_ds)), max(1, round(h * downsample / level_ds)))
        rgb = slide.read_region((x0, y0), level, size)
        if size == (w, h):
            return rgb
        return cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA)

    return read


def _core_filter(slide: Slide, region: Region | None, downsample: float):
    """Which core tiles (analysis px) to process: those touching the region, else tissue."""
    if region is not None:

        def touches(core) -> bool:
            x, y, w, h = (v * downsample for v in core)
            return bool(region.intersects_boxes([(x, y, x + w, y + h)])[0])

        return touches
    tissue = segment_tissue(slide, IHC_TISSUE)
    if not tissue.mask.any():
        return None  # small images: every tile
    scale = downsample / tissue.downsample

    def has_tissue(core) -> bool:
        x, y, w, h = core
        r0, c0 = int(y * scale), int(x * scale)
        r1, c1 = math.ceil((y + h) * scale), math.ceil((x + w) * scale)
        return bool(tissue.mask[r0 : max(r1, r0 + 1), c0 : max(c1, c0 + 1)].any())

    return has_tissue


def _bounds(
    slide: Slide, region: Region | None, downsample: float, margin: int
) -> tuple[int, int, int, int]:
    """The analysed rectangle ``(x, y, w, h)`` in analysis pixels: the slide, or the region's
    box and ``margin`` around it (the cells at its edge are found whole)."""
    width, height = (math.ceil(v / downsample) for v in (slide.info.width, slide.info.height))
    if region is None:
        return 0, 0, width, height
    x0, y0, x1, y1 = (v / downsample for v in region.geometry.bounds)
    left, top = max(0, int(x0) - margin), max(0, int(y0) - margin)
    right, bottom = min(width, math.ceil(x1) + margin), min(height, math.ceil(y1) + margin)
    return left, top, max(1, right - left), max(1, bottom - top)


def _stain_matrix(slide: Slide, options: CellsOptions) -> np.ndarray:
    if options.stain_matrix is not None:
        return np.asarray(options.stain_matrix)
    return slide_stain_matrix(slide)


def analyse_cells(
    slide: Slide,
    bundle: None = None,
    options: CellsOptions | None = None,
    context: JobContext | None = None,
) -> CellsResult:
    """Find, measure and class every cell of an IHC slide (or its region), then score it.

    Parameters
    ----------
    slide : Slide
        An open IHC slide or plain image (with a pixel size, or ``options.mpp``).
    bundle : None
        The classical detector needs no model (``options.model`` names a deep one).
    options : CellsOptions, optional
        Marker, profile, region, guideline and detector.
    context : JobContext, optional
        Progress per tile and cancellation.

    Raises
    ------
    CellsError, ProfileError, DetectorError, RoiError
        One sentence: no pixel size, a bad profile or model, a region off the slide.
    """
    options = options or CellsOptions()
    profile = options.scoring_profile()
    apply_pixel_size(slide, options.mpp)
    mpp0 = _pixel_size(slide)
    region = options.region.on_slide(slide.info) if options.region is not None else None
    downsample = max(1.0, ANALYSIS_MPP / mpp0)
    detector = load_detector(options.model, profile.nucleus, device=options.device)
    table, outlines = detect_cell_shapes(
        slide_reader(slide, downsample),
        _bounds(slide, region, downsample, margin_px(profile, mpp0 * downsample)),
        mpp0 * downsample,
        profile,
        detector,
        _stain_matrix(slide, options),
        context,
        tile=options.tile,
        workers=options.workers,
        outlines=options.outlines,
        keep_core=_core_filter(slide, region, downsample),
    )
    table = table.take(slice(None))
    table.x, table.y = table.x * downsample, table.y * downsample
    outlines = outlines.scaled(downsample) if outlines is not None else CellOutlines.empty()
    if region is not None:
        inside = region.contains(table.x, table.y)
        table = table.take(inside)
        outlines = outlines.take(inside) if len(outlines) else outlines
    cells = Cells(table, class_of_cells(table, profile, lateral=options.tumor_site == "gastric"),
                  options.marker, mpp0)  # fmt: skip
    decision = None
    if options.score:
        decision = decide(
            cells, options.tumor_site, options.specimen, options.ki67_method
        ).to_dict()
    info = {
        "tumor_cells": "inside the region" if region is not None else NO_REGION,
        **region_summary(region, mpp0),
        "profile": profile.name,
        "antibody": profile.antibody,
        "thresholds": profile.thresholds.model_dump(),
        "detector": getattr(detector, "name", "classical"),
        "tumor_site": options.tumor_site,
        "specimen": options.specimen,
        "ki67_method": options.ki67_method,
        "mpp": mpp0,
        "analysis_mpp": mpp0 * downsample,
    }
    return CellsResult(cells, outlines, info, (slide.info.width, slide.info.height), decision)
