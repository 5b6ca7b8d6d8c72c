"""Training data for HER2Net: cohort tiles, tumor masks and strong/weak tile labels.

A training cohort is a ``labels.csv`` with ``case_id``, ``he_path``, ``her2_status``
and ``patient_id`` (paths relative to the CSV), as written by
:func:`her2viewer.slide.synthetic.write_cohort`. Tumor annotations are a mask
PNG in the H&E frame: column ``tumor_mask_path`` with ``mask_downsample``, or
``tumor_mask.png`` beside the H&E slide with ``mask_downsample`` from its
``truth.json``.

Tile labels (seed 002): a tile is *strong* when the high-expression area of the
registered IHC tile is at least 50% of its tumor area, else *weak*; tiles with
<= 10% tumor are not labelled. High expression on IHC is automatic: a :data:`HighMask`
function (the ``her2net train`` verb passes :func:`her2viewer.analysis.her2net.ihc_high_mask`)
registers the IHC slide (``ihc_path``) onto the H&E and scores it by the guideline rules;
cell regions with at least weak-moderate *complete* membrane staining are high
expression. The alternative is a manual-label CSV (``case_id, x, y, label`` with
level-0 tile corners and ``strong``/``weak``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from her2viewer.errors import ModelError
from her2viewer.models.her2net.choices import TUMOR_MIN_FRACTION
from her2viewer.slide import Slide, open_slide
from her2viewer.tables import read_csv_rows
from her2viewer.tissue.masks import read_mask
from her2viewer.tissue.tiles import TileLayout, is_background, read_tile, tile_layout

REQUIRED_COLUMNS = ("case_id", "he_path", "her2_status", "patient_id")
STRONG_FRACTION = 0.5
#: ``high_mask(he, ihc, shape, downsample)``: the high-expression mask of the registered IHC
#: slide in the H&E frame, ``shape`` pixels at ``downsample`` H&E level-0 px per pixel
#: (:func:`her2viewer.analysis.her2net.ihc_high_mask`).
HighMask = Callable[[Slide, Slide, tuple[int, int], float], np.ndarray]


@dataclass
class TrainCase:
    """One H&E slide of a training cohort with its annotations."""

    case_id: str
    he_path: Path
    positive: bool
    patient_id: str
    tumor_mask_path: Path
    mask_downsample: float
    ihc_path: Path | None = None


def _mask_source(row: dict, root: Path, he_path: Path) -> tuple[Path, float]:
    if row.get("tumor_mask_path"):
        if not row.get("mask_downsample"):
            raise ModelError(f"Case {row['case_id']}: tumor_mask_path needs a mask_downsample.")
        return root / row["tumor_mask_path"], float(row["mask_downsample"])
    truth = he_path.parent / "truth.json"
    mask = he_path.parent / "tumor_mask.png"
    if not (truth.is_file() and mask.is_file()):
        raise ModelError(
            f"Case {row['case_id']} has no tumor annotation: add tumor_mask_path and "
            "mask_downsample columns, or put tumor_mask.png and truth.json beside the slide."
        )
    return mask, float(json.loads(truth.read_text())["mask_downsample"])


def read_training_cohort(labels_csv: str | Path) -> list[TrainCase]:
    """Read a HER2Net training cohort.

    Raises
    ------
    ModelError
        Missing file or column, unknown status, or a case without tumor annotation.
    """
    labels_csv = Path(labels_csv)
    rows = read_csv_rows(labels_csv, REQUIRED_COLUMNS, ModelError, "Labels file")
    root, cases = labels_csv.parent, []
    for row in rows:
        status = row["her2_status"].strip().lower()
        if status not in ("positive", "negative"):
            raise ModelError(
                f"Case {row['case_id']}: her2_status must be positive or negative, got {status!r}."
            )
        he_path = root / row["he_path"]
        mask, ds = _mask_source(row, root, he_path)
        ihc = root / row["ihc_path"] if row.get("ihc_path") else None
        cases.append(
            TrainCase(
                row["case_id"], he_path, status == "positive", row["patient_id"], mask, ds, ihc
            )
        )
    return cases


def crop_mask(
    mask: np.ndarray, mask_downsample: float, layout: TileLayout, index: int
) -> np.ndarray:
    """The part of a slide mask under tile ``index``, at the tile image's resolution (bool)."""
    x, y = layout.coords[index]
    scale = layout.mask_downsample / mask_downsample
    matrix = np.array([[scale, 0, x / mask_downsample], [0, scale, y / mask_downsample]])
    size = (layout.out_size, layout.out_size)
    out = cv2.warpAffine(
        mask.astype(np.uint8), matrix, size, flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP
    )
    return out > 0


def strong_label(
    tumor: np.ndarray,
    high: np.ndarray,
    min_tumor: float = TUMOR_MIN_FRACTION,
    strong_fraction: float = STRONG_FRACTION,
) -> int:
    """Seed rule: 1 (strong) when high-expression tumor >= 50% of the tile's tumor, else 0.

    Returns -1 for a tile with <= ``min_tumor`` tumor pixels (not labelled).
    """
    tumor = np.asarray(tumor, bool)
    if tumor.mean() <= min_tumor:
        return -1
    return int((np.asarray(high, bool) & tumor).sum() >= strong_fraction * tumor.sum())


def read_tile_labels(path: str | Path) -> dict[tuple[str, int, int], int]:
    """Read a manual-label CSV: ``case_id, x, y, label`` (``strong``/``weak``) per tile."""
    path = Path(path)
    rows = read_csv_rows(path, ("case_id", "x", "y", "label"), ModelError, "Tile label file")
    labels = {}
    for row in rows:
        label = row["label"].strip().lower()
        if label not in ("strong", "weak"):
            raise ModelError(f"{path.name}: label must be strong or weak, got {label!r}.")
        labels[(row["case_id"], int(row["x"]), int(row["y"]))] = int(label == "strong")
    return labels


@dataclass
class TileSet:
    """Tiles of several slides: images, tumor masks and strong labels (-1 = none)."""

    images: np.ndarray
    tumor: np.ndarray
    strong: np.ndarray
    case: np.ndarray
    coords: np.ndarray

    def save(self, path: Path) -> None:
        """Write an ``.npz`` atomically."""
        tmp = path.with_suffix(".tmp.npz")
        np.savez_compressed(tmp, **self.__dict__)
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> TileSet:
        """Read an ``.npz`` written by :meth:`save`."""
        with np.load(path) as data:
            return cls(**{k: data[k] for k in cls.__dataclass_fields__})

    @classmethod
    def concat(cls, parts: list[TileSet]) -> TileSet:
        """Join the tiles of several slides."""
        return cls(
            **{k: np.concatenate([getattr(p, k) for p in parts]) for k in cls.__dataclass_fields__}
        )


def _ihc_mask(case: TrainCase, he: Slide, shape, high_mask: HighMask | None) -> np.ndarray:
    """The high-expression mask of a case's registered IHC slide, in its tumor mask's frame."""
    if case.ihc_path is None:
        raise ModelError(
            f"Case {case.case_id} has no ihc_path; give IHC slides or a manual-label CSV."
        )
    if high_mask is None:
        raise ModelError("Tile labels from IHC need an IHC scorer; give a manual-label CSV.")
    with open_slide(case.ihc_path) as ihc:
        return high_mask(he, ihc, shape, case.mask_downsample)


def case_tiles(
    case: TrainCase,
    index: int,
    config: dict,
    manual: dict[tuple[str, int, int], int] | None = None,
    high_mask: HighMask | None = None,
) -> TileSet:
    """Tissue tiles of one case with tumor masks and strong labels.

    Parameters
    ----------
    case : TrainCase
    index : int
        Case number stored with each tile.
    config : dict
        ``magnification``, ``tile_size``, ``input_size``, ``background_saturation``,
        ``tumor_min_fraction``, ``strong_fraction``.
    manual : dict, optional
        Manual tile labels; without them labels come from the registered IHC.
    high_mask : callable, optional
        How the IHC high-expression mask is made (needed without ``manual``).
    """
    with open_slide(case.he_path) as he:
        layout = tile_layout(he, config["magnification"], config["tile_size"], config["input_size"])
        tumor_mask = read_mask(case.tumor_mask_path)
        ihc_mask = None if manual is not None else _ihc_mask(case, he, tumor_mask.shape, high_mask)
        rows = []
        for i in range(len(layout.coords)):
            tile = read_tile(he, layout, i)
            if is_background(tile, config["background_saturation"]):
                continue
            tumor = crop_mask(tumor_mask, case.mask_downsample, layout, i)
            x, y = (int(v) for v in layout.coords[i])
            if manual is None:
                high = crop_mask(ihc_mask, case.mask_downsample, layout, i)
                label = strong_label(
                    tumor, high, config["tumor_min_fraction"], config["strong_fraction"]
                )
            elif tumor.mean() > config["tumor_min_fraction"]:
                label = manual.get((case.case_id, x, y), -1)
            else:
                label = -1  # non-tumor tiles are never used, whatever the CSV says
            rows.append((tile, tumor, label, (x, y)))
    s = layout.out_size
    return TileSet(
        images=np.stack([r[0] for r in rows]) if rows else np.zeros((0, s, s, 3), np.uint8),
        tumor=np.stack([r[1] for r in rows]) if rows else np.zeros((0, s, s), bool),
        strong=np.array([r[2] for r in rows], np.int8),
        case=np.full(len(rows), index, np.int32),
        coords=np.array([r[3] for r in rows], np.int64).reshape(-1, 2),
    )
