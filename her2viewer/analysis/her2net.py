"""HER2Net on one H&E slide (seed 002): tiles -> tumor mask -> strong tiles -> P -> status.

1. The slide is cut into non-overlapping ``tile_size`` (512) px tiles at the bundle's
   magnification; tiles at the right/bottom edge are padded with white, never
   resized. A reduced-resolution bundle reads each tile scaled by
   ``input_size / tile_size`` (recorded in its ``bundle.json``).
2. Background tiles (mean HSV saturation <= 10 on 0..255) are dropped.
3. The tumor detector gives a tumor mask per tile; tiles with <= 10% tumor pixels
   are not classified (non-tumor filter).
4. The five sub-classifiers and the integrated classifier call each remaining tile
   strong or weak.
5. ``P = sum K_i / (sum K_i + sum L_j)`` (seed's formula 1): K_i tumor pixels of
   strong tile i, L_j tumor pixels of weak tile j; HER2 positive when P >= 10%.

Masks are kept in level-0 geometry at ``mask_downsample`` level-0 px per pixel and
become :class:`~her2viewer.overlay.MaskLayer` layers (tumor; strong in brown).
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, astuple, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from her2viewer.errors import ModelError
from her2viewer.jobs import JobContext
from her2viewer.models.checks import check_slide_scope, demo_notice, require_finite
from her2viewer.models.her2net.model import Her2NetModel, load_her2net
from her2viewer.outputs import prepare_output_dir, write_bytes_atomic, write_text_atomic
from her2viewer.overlay import MaskLayer
from her2viewer.paths import cache_dir
from her2viewer.slide import Slide
from her2viewer.tables import write_csv

TILE_SIZE = 512
BACKGROUND_SATURATION = 10.0
TUMOR_MIN_FRACTION = 0.10
POSITIVE_PERCENT = 10.0
#: Colours of the overlay layers: tumor (teal) and strong high-expression tumor (DAB brown).
TUMOR_COLOR = (0, 170, 170)
STRONG_COLOR = (140, 80, 20)


# --------------------------------------------------------------------------- tiling
@dataclass(frozen=True)
class TileLayout:
    """Non-overlapping tiles covering a slide.

    Attributes
    ----------
    coords : numpy.ndarray
        ``(N, 2)`` int64 level-0 top-left corners, row by row.
    tile_size0 : int
        Tile side in level-0 pixels.
    out_size : int
        Side of the tile image handed to the networks.
    slide_size : (int, int)
        Level-0 ``(width, height)``.
    """

    coords: np.ndarray
    tile_size0: int
    out_size: int
    slide_size: tuple[int, int]

    @property
    def mask_downsample(self) -> float:
        """Level-0 pixels per pixel of a tile image (and of the slide masks)."""
        return self.tile_size0 / self.out_size

    @property
    def grid_shape(self) -> tuple[int, int]:
        """Tile rows and columns."""
        w, h = self.slide_size
        return math.ceil(h / self.tile_size0), math.ceil(w / self.tile_size0)


def tile_layout(
    slide: Slide, magnification: float, tile_size: int = TILE_SIZE, out_size: int | None = None
) -> TileLayout:
    """Cut a slide into ``tile_size`` px tiles at ``magnification``.

    Parameters
    ----------
    slide : Slide
        Open slide with a known pixel size or objective power.
    magnification : float
        Objective magnification of the tiles (e.g. 4 as in the seed, 20).
    tile_size : int
        Tile side at that magnification (512).
    out_size : int, optional
        Side of the returned tile images; ``tile_size`` by default.
    """
    if tile_size < 1 or (out_size is not None and out_size < 1):
        raise ModelError("Tile and input sizes must be positive.")
    tile0 = max(1, round(tile_size * slide.downsample_for_magnification(magnification)))
    w, h = slide.info.width, slide.info.height
    ys, xs = np.mgrid[0 : math.ceil(h / tile0), 0 : math.ceil(w / tile0)]
    coords = np.stack([xs.ravel(), ys.ravel()], 1).astype(np.int64) * tile0
    return TileLayout(coords, int(tile0), int(out_size or tile_size), (w, h))


def read_tile(slide: Slide, layout: TileLayout, index: int) -> np.ndarray:
    """Read tile ``index``; the part outside the slide is white padding, never stretched.

    Returns
    -------
    numpy.ndarray
        RGB uint8 ``(out_size, out_size, 3)``.
    """
    x, y = (int(v) for v in layout.coords[index])
    scale = layout.out_size / layout.tile_size0
    inside_w = min(layout.tile_size0, layout.slide_size[0] - x)
    inside_h = min(layout.tile_size0, layout.slide_size[1] - y)
    out_w, out_h = max(1, round(inside_w * scale)), max(1, round(inside_h * scale))
    level = slide.best_level_for_downsample(1.0 / scale)
    ds = slide.info.levels[level].downsample
    rgb = slide.read_region((x, y), level, (math.ceil(inside_w / ds), math.ceil(inside_h / ds)))
    if rgb.shape[:2] != (out_h, out_w):
        rgb = cv2.resize(rgb, (out_w, out_h), interpolation=cv2.INTER_AREA)
    tile = np.full((layout.out_size, layout.out_size, 3), 255, np.uint8)
    tile[:out_h, :out_w] = rgb[..., :3]
    return tile


def tile_saturation(rgb: np.ndarray) -> float:
    """Mean HSV saturation (0..255) of an RGB tile."""
    hsv = cv2.cvtColor(np.ascontiguousarray(rgb[..., :3]), cv2.COLOR_RGB2HSV)
    return float(hsv[..., 1].mean())


def is_background(rgb: np.ndarray, threshold: float = BACKGROUND_SATURATION) -> bool:
    """True for a pure background tile: mean saturation <= ``threshold`` (seed: 10)."""
    return tile_saturation(rgb) <= threshold


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


# --------------------------------------------------------------------------- results
@dataclass
class Her2NetOptions:
    """Thresholds of one prediction (seed values by default)."""

    positive_percent: float = POSITIVE_PERCENT
    tumor_min_fraction: float = TUMOR_MIN_FRACTION
    background_saturation: float = BACKGROUND_SATURATION
    strong_threshold: float = 0.5
    batch_size: int = 32
    workers: int = 2


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
class Her2NetResult:
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

    def layers(self) -> list[MaskLayer]:
        """The tumor and strong (brown) overlay layers, level-0 geometry."""
        return [
            MaskLayer(
                "HER2Net tumor",
                labels=self.tumor_mask,
                downsample=self.mask_downsample,
                class_names={1: "tumor"},
                colors={1: TUMOR_COLOR},
                mode="outline",
            ),
            MaskLayer(
                "HER2Net high expression",
                labels=self.strong_mask,
                downsample=self.mask_downsample,
                class_names={1: "HER2 high expression (strong tile)"},
                colors={1: STRONG_COLOR},
            ),
        ]

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
        }


def save_result(result: Her2NetResult, out_dir: str | Path) -> Her2NetResult:
    """Write ``tumor_mask.png``, ``strong_mask.png``, ``tiles.csv`` and ``her2net.json``.

    The masks load back with ``MaskLayer.from_png(name, path, result.mask_downsample)``.
    Every file is written atomically; the summary last.

    Raises
    ------
    OutputError
        One sentence when the folder or a file cannot be written.
    """
    out = prepare_output_dir(out_dir)
    files = {
        "tumor_mask": str(out / "tumor_mask.png"),
        "strong_mask": str(out / "strong_mask.png"),
        "tiles": str(out / "tiles.csv"),
        "result": str(out / "her2net.json"),
    }
    for name in ("tumor_mask", "strong_mask"):
        mask = getattr(result, name).astype(np.uint8) * 255
        write_bytes_atomic(files[name], cv2.imencode(".png", mask)[1].tobytes())
    header = list(TileRecord.__dataclass_fields__)
    write_csv(files["tiles"], header, (astuple(t) for t in result.tiles))
    result.files = files
    write_text_atomic(files["result"], json.dumps(result.summary(), indent=2))
    return result


def load_result(out_dir: str | Path) -> Her2NetResult:
    """Read a result written by :func:`save_result`."""
    out = Path(out_dir)
    try:
        summary = json.loads((out / "her2net.json").read_text())
        with open(out / "tiles.csv", newline="") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelError(f"No readable HER2Net result in {out}.") from exc
    masks = [
        cv2.imread(str(out / f"{n}_mask.png"), cv2.IMREAD_GRAYSCALE) > 0
        for n in ("tumor", "strong")
    ]
    tiles = [TileRecord(**_parse_row(r)) for r in rows]
    keys = ("her2_status", "high_expression_percent", "positive_percent", "tumor_area_px")
    return Her2NetResult(
        **{k: summary[k] for k in keys},
        strong_area_px=summary["strong_area_px"],
        tumor_mask=masks[0],
        strong_mask=masks[1],
        mask_downsample=summary["mask_downsample"],
        tiles=tiles,
        tile_size_px=summary["tile_size_px"],
        slide=summary["slide"],
        bundle=summary["bundle"],
        files=summary["overlays"],
        notice=summary.get("notice"),
        warning=summary.get("warning"),
    )


def _parse_row(row: dict) -> dict:
    def value(text: str):
        return None if text == "" else json.loads(text.lower())

    return {k: value(v) for k, v in row.items()}


# --------------------------------------------------------------------------- prediction
def _batches(n: int, size: int):
    return [list(range(i, min(n, i + size))) for i in range(0, n, size)]


def _read_batches(slide: Slide, layout: TileLayout, size: int, workers: int):
    """Yield ``(indices, tiles)``; the next batch decodes in threads while this one runs."""
    batches = _batches(len(layout.coords), size)
    if not batches:
        return
    with ThreadPoolExecutor(max(1, workers)) as pool:

        def submit(batch):
            return [pool.submit(read_tile, slide, layout, i) for i in batch]

        pending = submit(batches[0])
        for k, batch in enumerate(batches):
            tiles = np.stack([f.result() for f in pending])
            if k + 1 < len(batches):
                pending = submit(batches[k + 1])
            yield batch, tiles


def _paste(mask: np.ndarray, tile_mask: np.ndarray, layout: TileLayout, index: int) -> int:
    """Paste a tile mask into the slide mask (clipped to the slide); return pixels set."""
    ds = layout.mask_downsample
    col, row = (int(round(v / ds)) for v in layout.coords[index])
    h = min(tile_mask.shape[0], mask.shape[0] - row)
    w = min(tile_mask.shape[1], mask.shape[1] - col)
    mask[row : row + h, col : col + w] = tile_mask[:h, :w]
    return int(tile_mask[:h, :w].sum())


def predict_slide(
    slide: Slide,
    model: Her2NetModel,
    options: Her2NetOptions | None = None,
    context: JobContext | None = None,
) -> Her2NetResult:
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
    Her2NetResult
    """
    options = options or Her2NetOptions()
    warning = check_slide_scope(model.meta, slide.info, _model_name(model))
    layout = tile_layout(slide, model.magnification, model.tile_size, model.input_size)
    ds = layout.mask_downsample
    w, h = layout.slide_size
    tumor_mask = np.zeros((math.ceil(h / ds), math.ceil(w / ds)), bool)
    strong_mask = np.zeros_like(tumor_mask)
    records, total = [], len(layout.coords)
    for batch, tiles in _read_batches(slide, layout, options.batch_size, options.workers):
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
    return Her2NetResult(
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
    )


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


# --------------------------------------------------------------------------- cache
def result_cache_dir(slide: Slide, bundle_path: str | Path, options: Her2NetOptions) -> Path:
    """Cache folder of one slide + bundle + thresholds, under the user cache."""
    bundle_path = Path(bundle_path).resolve()
    stamp = (bundle_path / "bundle.json") if bundle_path.is_dir() else bundle_path
    key = json.dumps(
        [
            str(slide.info.fingerprint),
            slide.info.mpp_x,
            str(bundle_path),
            stamp.stat().st_mtime_ns,
            asdict(options),
        ],
        sort_keys=True,
    )
    return cache_dir() / "her2net" / hashlib.sha256(key.encode()).hexdigest()[:20]


def analyse_slide(
    slide: Slide,
    bundle_path: str | Path,
    model: Her2NetModel | None = None,
    options: Her2NetOptions | None = None,
    context: JobContext | None = None,
    out_dir: str | Path | None = None,
) -> Her2NetResult:
    """Predict with caching: a result for the same slide, bundle and options is reused.

    Parameters
    ----------
    slide : Slide
    bundle_path : path
        The bundle (its path and modification time are part of the cache key).
    model : Her2NetModel, optional
        Already loaded; loaded from ``bundle_path`` when needed.
    options, context
        As for :func:`predict_slide`.
    out_dir : path, optional
        Where to write the overlay files; the cache folder by default.
    """
    options = options or Her2NetOptions()
    cached = result_cache_dir(slide, bundle_path, options)
    if (cached / "her2net.json").is_file() and out_dir is None:
        return load_result(cached)
    model = model or load_her2net(bundle_path)
    result = predict_slide(slide, model, options, context)
    result.bundle = str(bundle_path)
    return save_result(result, out_dir or cached)
