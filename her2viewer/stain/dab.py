"""DAB measures per pixel, per tile and per region: OD, positive fractions, H-score.

Thresholds are on the DAB channel of colour deconvolution in base-10 optical
density, with QuPath-like defaults (1+ 0.2, 2+ 0.4, 3+ 0.6).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from her2viewer.errors import StainError


@dataclass(frozen=True)
class DabThresholds:
    """DAB OD cut-offs for weak (1+), moderate (2+) and strong (3+) pixels."""

    weak: float = 0.2
    moderate: float = 0.4
    strong: float = 0.6

    def __post_init__(self) -> None:
        if not 0 < self.weak < self.moderate < self.strong:
            raise StainError(
                "DAB thresholds must increase: 0 < weak < moderate < strong, got "
                f"{self.weak}, {self.moderate}, {self.strong}."
            )

    def bins(self, dab: np.ndarray) -> np.ndarray:
        """Return per-pixel intensity class 0 (negative) .. 3 (strong) as uint8."""
        edges = np.array([self.weak, self.moderate, self.strong], np.float32)
        return np.digitize(dab, edges).astype(np.uint8)


@dataclass(frozen=True)
class DabMeasures:
    """Summary of DAB over a set of pixels (fractions of those pixels, 0..1)."""

    n_pixels: int
    mean_od: float
    max_od: float
    positive_fraction: float
    fraction_1plus: float
    fraction_2plus: float
    fraction_3plus: float
    h_score: float

    def to_dict(self) -> dict:
        """Return the measures as a plain dict."""
        return asdict(self)


def h_score(fraction_1plus: float, fraction_2plus: float, fraction_3plus: float) -> float:
    """Return the H-score, ``100 * (1 * f1 + 2 * f2 + 3 * f3)``, in 0..300.

    The fractions are of all counted pixels (or cells) in the exclusive bins
    weak, moderate and strong.
    """
    return 100.0 * (fraction_1plus + 2.0 * fraction_2plus + 3.0 * fraction_3plus)


def dab_measures(
    dab: np.ndarray, mask: np.ndarray | None = None, thresholds: DabThresholds | None = None
) -> DabMeasures:
    """Measure DAB over the pixels of ``mask`` (all pixels if omitted).

    Parameters
    ----------
    dab : numpy.ndarray
        DAB optical density, any shape (e.g. ``separate_stains(rgb)[..., 1]``).
    mask : numpy.ndarray of bool, optional
        Same shape; the pixels to count (tissue).
    thresholds : DabThresholds, optional
        Cut-offs; QuPath-like defaults when omitted.

    Returns
    -------
    DabMeasures
        Zero measures when no pixel is counted.
    """
    thresholds = thresholds or DabThresholds()
    values = np.asarray(dab, np.float32)
    if mask is not None:
        if np.shape(mask) != values.shape:
            raise StainError(f"Mask shape {np.shape(mask)} differs from DAB shape {values.shape}.")
        values = values[np.asarray(mask, bool)]
    values = values.ravel()
    if values.size == 0:
        return DabMeasures(0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    counts = np.bincount(thresholds.bins(values), minlength=4) / values.size
    return DabMeasures(
        n_pixels=int(values.size),
        mean_od=float(np.maximum(values, 0).mean()),
        max_od=float(values.max()),
        positive_fraction=float(counts[1:].sum()),
        fraction_1plus=float(counts[1]),
        fraction_2plus=float(counts[2]),
        fraction_3plus=float(counts[3]),
        h_score=h_score(*counts[1:]),
    )


def merge_measures(parts: list[DabMeasures]) -> DabMeasures:
    """Combine measures of disjoint pixel sets (e.g. tiles) into one, weighted by pixels."""
    n = sum(p.n_pixels for p in parts)
    if n == 0:
        return DabMeasures(0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)

    def mean(name: str) -> float:
        return float(sum(getattr(p, name) * p.n_pixels for p in parts) / n)

    fractions = [mean(f"fraction_{k}plus") for k in (1, 2, 3)]
    return DabMeasures(
        n_pixels=n,
        mean_od=mean("mean_od"),
        max_od=max(p.max_od for p in parts if p.n_pixels),
        positive_fraction=sum(fractions),
        fraction_1plus=fractions[0],
        fraction_2plus=fractions[1],
        fraction_3plus=fractions[2],
        h_score=h_score(*fractions),
    )


def tile_means(
    dab: np.ndarray, tile: int, mask: np.ndarray | None = None, min_fraction: float = 0.0
) -> np.ndarray:
    """Mean DAB OD of each non-overlapping ``tile`` x ``tile`` block.

    Parameters
    ----------
    dab : numpy.ndarray
        ``(h, w)`` DAB optical density.
    tile : int
        Block side in pixels; partial blocks at the right/bottom edges are dropped.
    mask : numpy.ndarray of bool, optional
        Counted pixels; each block's mean is over its counted pixels.
    min_fraction : float
        Blocks with fewer counted pixels than this fraction are NaN.

    Returns
    -------
    numpy.ndarray
        ``(h // tile, w // tile)`` float32 (NaN where nothing is counted).
    """
    rows, cols = dab.shape[0] // tile, dab.shape[1] // tile
    if rows == 0 or cols == 0:
        return np.full((rows, cols), np.nan, np.float32)
    crop = np.maximum(np.asarray(dab, np.float32)[: rows * tile, : cols * tile], 0)
    weight = (
        np.ones_like(crop)
        if mask is None
        else np.asarray(mask, np.float32)[: rows * tile, : cols * tile]
    )
    sums = (crop * weight).reshape(rows, tile, cols, tile).sum(axis=(1, 3))
    counts = weight.reshape(rows, tile, cols, tile).sum(axis=(1, 3))
    with np.errstate(invalid="ignore", divide="ignore"):
        means = sums / counts
    means[counts <= max(min_fraction * tile * tile, 0.0)] = np.nan
    return means.astype(np.float32)
