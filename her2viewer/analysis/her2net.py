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
from dataclasses import asdict, astuple, replace
from pathlib import Path

import cv2
import numpy as np

from her2viewer.analysis.ihc import NOT_TUMOR, score_ihc
from her2viewer.annotations.roi import region_summary, summary_region
from her2viewer.errors import ModelError
from her2viewer.jobs import JobContext
from her2viewer.models.her2net.model import Her2NetModel, load_her2net
from her2viewer.models.her2net.predict import (
    Her2NetOptions,
    Her2NetPrediction,
    TileRecord,
    predict_her2net,
)
from her2viewer.outputs import prepare_output_dir, write_bytes_atomic, write_text_atomic
from her2viewer.overlay import MaskLayer
from her2viewer.paths import cache_dir
from her2viewer.registration import register_slides
from her2viewer.slide import Slide
from her2viewer.tables import write_csv

#: Colours of the overlay layers: tumor (teal) and strong high-expression tumor (DAB brown).
TUMOR_COLOR = (0, 170, 170)
STRONG_COLOR = (140, 80, 20)


# --------------------------------------------------------------------------- results
class Her2NetResult(Her2NetPrediction):
    """HER2Net's answer for one slide (:class:`Her2NetPrediction`) with its overlay layers."""

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

    def save(self, path: str | Path) -> Path:
        """Write ``tumor_mask.png``, ``strong_mask.png``, ``tiles.csv`` and ``her2net.json``
        into the folder ``path`` and return it.

        The masks load back with ``MaskLayer.from_png(name, path, result.mask_downsample)``.
        Every file is written atomically; the summary last.

        Raises
        ------
        OutputError
            One sentence when the folder or a file cannot be written.
        """
        out = prepare_output_dir(path)
        files = {
            "tumor_mask": str(out / "tumor_mask.png"),
            "strong_mask": str(out / "strong_mask.png"),
            "tiles": str(out / "tiles.csv"),
            "result": str(out / "her2net.json"),
        }
        for name in ("tumor_mask", "strong_mask"):
            mask = getattr(self, name).astype(np.uint8) * 255
            write_bytes_atomic(files[name], cv2.imencode(".png", mask)[1].tobytes())
        header = list(TileRecord.__dataclass_fields__)
        write_csv(files["tiles"], header, (astuple(t) for t in self.tiles))
        self.files = files
        write_text_atomic(files["result"], json.dumps(self.summary(), indent=2))
        return out

    @classmethod
    def load(cls, path: str | Path) -> Her2NetResult:
        """Read a result written by :meth:`save` (a :class:`ModelError` when unreadable)."""
        out = Path(path)
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
        keys = ("her2_status", "high_expression_percent", "positive_percent", "tumor_area_px")
        return cls(
            **{k: summary[k] for k in keys},
            strong_area_px=summary["strong_area_px"],
            tumor_mask=masks[0],
            strong_mask=masks[1],
            mask_downsample=summary["mask_downsample"],
            tiles=[TileRecord(**_parse_row(r)) for r in rows],
            tile_size_px=summary["tile_size_px"],
            slide=summary["slide"],
            bundle=summary["bundle"],
            files=summary["overlays"],
            notice=summary.get("notice"),
            warning=summary.get("warning"),
            roi=summary_region(summary),
        )


def _parse_row(row: dict) -> dict:
    def value(text: str):
        return None if text == "" else json.loads(text.lower())

    return {k: value(v) for k, v in row.items()}


# --------------------------------------------------------------------------- prediction
def predict_slide(
    slide: Slide,
    model: Her2NetModel,
    options: Her2NetOptions | None = None,
    context: JobContext | None = None,
) -> Her2NetResult:
    """Run HER2Net on an open H&E slide, with overlay layers (see ``predict_her2net``).

    Returns
    -------
    Her2NetResult
    """
    return Her2NetResult(**vars(predict_her2net(slide, model, options, context)))


# --------------------------------------------------------------------------- training labels
#: Lowest IHC cell-region category counted as high expression (weak-moderate complete).
HIGH_CATEGORY = 2


def ihc_high_mask(he: Slide, ihc: Slide, shape: tuple[int, int], downsample: float) -> np.ndarray:
    """High-expression mask from the registered IHC slide, in the H&E frame.

    HER2Net's tile labels from IHC (:data:`~her2viewer.models.her2net.data.HighMask`):
    the IHC slide is registered onto the H&E and scored by the guideline rules; cell
    regions with at least weak-moderate *complete* membrane staining are high expression.

    Parameters
    ----------
    he, ihc : Slide
        The paired slides.
    shape : (int, int)
        Output ``(rows, cols)``.
    downsample : float
        H&E level-0 px per output pixel.
    """
    registration = register_slides(he, ihc)
    score = score_ihc(ihc)
    high = (score.category_map >= HIGH_CATEGORY) & (score.category_map != NOT_TUMOR)
    to_map = np.diag([1 / downsample, 1 / downsample, 1.0])
    from_map = np.diag([score.map_downsample, score.map_downsample, 1.0])
    matrix = to_map @ registration.matrix @ from_map
    warped = cv2.warpAffine(
        high.astype(np.uint8), matrix[:2], (shape[1], shape[0]), flags=cv2.INTER_NEAREST
    )
    return warped > 0


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
            asdict(replace(options, region=None)),
            options.region.key if options.region is not None else None,
        ],
        sort_keys=True,
    )
    return cache_dir() / "her2net" / hashlib.sha256(key.encode()).hexdigest()[:20]


def analyse_her2net(
    slide: Slide,
    bundle: str | Path,
    options: Her2NetOptions | None = None,
    context: JobContext | None = None,
    *,
    model: Her2NetModel | None = None,
    out_dir: str | Path | None = None,
) -> Her2NetResult:
    """Run HER2Net with caching: a result for the same slide, bundle and options is reused.

    Parameters
    ----------
    slide : Slide
        An open H&E slide.
    bundle : path
        The HER2Net bundle (its path and modification time are part of the cache key).
    options : Her2NetOptions, optional
        Thresholds (the seed's by default).
    context : JobContext, optional
        Progress and cancellation of a background job.
    model : Her2NetModel, optional
        Already loaded; loaded from ``bundle`` when needed.
    out_dir : path, optional
        Where to write the overlay files; the cache folder by default.
    """
    options = options or Her2NetOptions()
    cached = result_cache_dir(slide, bundle, options)
    if (cached / "her2net.json").is_file() and out_dir is None:
        result = Her2NetResult.load(cached)
        # the cache is keyed by the region's geometry: the same area may be named otherwise now
        result.roi = region_summary(options.region, slide.info.mpp_x)
        return result
    model = model or load_her2net(bundle)
    result = predict_slide(slide, model, options, context)
    result.bundle = str(bundle)
    result.save(out_dir or cached)
    return result
