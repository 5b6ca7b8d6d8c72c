"""Macenko stain-vector estimation and stain normalisation.

Reference: M. Macenko et al., "A method for normalizing histology slides for
quantitative analysis", ISBI 2009. Optical densities of stained pixels lie in a
plane spanned by the stain vectors; the vectors are the directions at the
``alpha`` and ``100 - alpha`` percentiles of the angle within that plane.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from her2viewer.errors import StainError
from her2viewer.stain.deconvolution import (
    HDAB,
    combine_stains,
    rgb_to_od,
    separate_stains,
    stain_matrix,
)

#: Per-channel OD below which a pixel is ignored (Macenko's beta 0.15 in natural-log OD).
MACENKO_BETA = 0.15 / np.log(10)
#: Percentile of the in-plane angle taken as the extreme stain directions.
MACENKO_ALPHA = 1.0
#: An estimated vector further than this (degrees) from the reference is not trusted.
MAX_DEVIATION_DEG = 30.0
MIN_PIXELS = 100
#: Percentile of stain amounts used as the stain's maximum in normalisation.
MAX_PERCENTILE = 99.0


def _angle_deg(a: np.ndarray, b: np.ndarray) -> float:
    cos = float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))
    return float(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))


def _signed(vector: np.ndarray) -> np.ndarray:
    return -vector if vector.sum() < 0 else vector


def _stained_od(rgb: np.ndarray, beta: float) -> np.ndarray:
    od = rgb_to_od(rgb).reshape(-1, 3)
    return od[np.all(od > beta, axis=1)].astype(np.float64)


def estimate_stain_matrix(
    rgb: np.ndarray,
    reference: np.ndarray = HDAB,
    beta: float = MACENKO_BETA,
    alpha: float = MACENKO_ALPHA,
    max_deviation: float = MAX_DEVIATION_DEG,
) -> np.ndarray:
    """Estimate an image's two stain vectors with Macenko's method.

    Parameters
    ----------
    rgb : numpy.ndarray
        ``(h, w, 3)`` uint8 image or tile(s) of the slide; white glass is ignored.
    reference : numpy.ndarray
        Default stain matrix; it orders the estimated vectors (the one nearest the
        reference's first row comes first) and replaces an estimate that deviates
        from its reference vector by more than ``max_deviation`` degrees (e.g. the
        DAB vector of a slide with almost no DAB).
    beta : float
        Pixels with OD at or below ``beta`` in any channel are background.
    alpha : float
        Angle percentile (Macenko: 1).
    max_deviation : float
        Degrees; see ``reference``.

    Returns
    -------
    numpy.ndarray
        ``(3, 3)`` stain matrix, rows: first stain, second stain, residual.

    Raises
    ------
    StainError
        When fewer than 100 stained pixels are found.
    """
    reference = np.asarray(reference, float)
    od = _stained_od(rgb, beta)
    if len(od) < MIN_PIXELS:
        raise StainError(
            f"Only {len(od)} stained pixels found; stain vectors need tissue in the image."
        )
    _, eigvecs = np.linalg.eigh(np.cov(od, rowvar=False))
    plane = eigvecs[:, [2, 1]]  # two largest components
    plane *= np.sign(plane.sum(axis=0, keepdims=True) + 1e-12)
    projected = od @ plane
    phi = np.arctan2(projected[:, 1], projected[:, 0])
    low, high = np.percentile(phi, [alpha, 100 - alpha])
    vectors = [plane @ np.array([np.cos(a), np.sin(a)]) for a in (low, high)]
    vectors = [_signed(v) for v in vectors]
    if _angle_deg(vectors[0], reference[0]) > _angle_deg(vectors[1], reference[0]):
        vectors = vectors[::-1]
    if _angle_deg(vectors[1], reference[1]) > max_deviation:
        # One stain only (e.g. IHC without DAB): its direction is the main axis, not an
        # extreme angle, and the absent stain keeps its reference vector.
        vectors = [_signed(eigvecs[:, 2]), reference[1]]
    chosen = [
        est if _angle_deg(est, ref) <= max_deviation else ref
        for est, ref in zip(vectors, reference[:2], strict=True)
    ]
    if _angle_deg(chosen[0], chosen[1]) < 5.0:
        chosen = list(reference[:2])
    return stain_matrix(chosen[0], chosen[1])


def _max_amounts(rgb: np.ndarray, matrix: np.ndarray, percentile: float) -> np.ndarray:
    stains = separate_stains(rgb, matrix)[..., :2].reshape(-1, 2)
    stained = stains[np.any(stains > MACENKO_BETA, axis=1)]
    if len(stained) < MIN_PIXELS:
        return np.ones(2, np.float32)
    return np.maximum(np.percentile(stained, percentile, axis=0), 1e-3).astype(np.float32)


@dataclass(frozen=True)
class MacenkoNormalizer:
    """Map an image's stains onto a reference's vectors and intensity range.

    Build one with :meth:`fit` on a reference image (or give the matrix and
    maxima directly) and call it on any tile: ``normalizer(tile) -> tile``.

    Attributes
    ----------
    matrix : numpy.ndarray
        ``(3, 3)`` reference stain matrix.
    max_amounts : numpy.ndarray
        ``(2,)`` reference 99th-percentile stain amounts.
    default : numpy.ndarray
        Default matrix for estimation on the images to normalise.
    """

    matrix: np.ndarray
    max_amounts: np.ndarray
    default: np.ndarray = field(default_factory=HDAB.copy)

    @classmethod
    def fit(cls, reference_rgb: np.ndarray, default: np.ndarray = HDAB) -> MacenkoNormalizer:
        """Estimate the reference's stain vectors and maxima."""
        matrix = estimate_stain_matrix(reference_rgb, default)
        return cls(matrix, _max_amounts(reference_rgb, matrix, MAX_PERCENTILE), default)

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        """Normalise an RGB uint8 image; images without enough stain are returned as is."""
        try:
            source = estimate_stain_matrix(rgb, self.default)
        except StainError:
            return np.asarray(rgb)[..., :3].copy()
        stains = separate_stains(rgb, source)
        scale = self.max_amounts / _max_amounts(rgb, source, MAX_PERCENTILE)
        stains[..., :2] *= scale
        stains[..., 2] = 0.0
        return combine_stains(stains, self.matrix)

    def to_dict(self) -> dict:
        """Return a JSON-serialisable description (for bundles and settings)."""
        return {
            "method": "macenko",
            "matrix": np.asarray(self.matrix).tolist(),
            "max_amounts": np.asarray(self.max_amounts).tolist(),
            "default": np.asarray(self.default).tolist(),
        }

    @classmethod
    def from_dict(cls, data: dict) -> MacenkoNormalizer:
        """Rebuild a normaliser written by :meth:`to_dict`."""
        try:
            return cls(
                stain_matrix(*data["matrix"]),
                np.asarray(data["max_amounts"], np.float32).reshape(2),
                stain_matrix(*data["default"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise StainError(f"Not a Macenko normaliser description: {exc}.") from exc
