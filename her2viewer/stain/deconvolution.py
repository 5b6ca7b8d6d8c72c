"""Ruifrok & Johnston colour deconvolution in base-10 optical density.

Reference: A. C. Ruifrok and D. A. Johnston, "Quantification of histochemical
staining by color deconvolution", Anal. Quant. Cytol. Histol. 23 (2001) 291-299;
the same method as ``skimage.color.rgb2hed`` and QuPath's stain separation.

A stain matrix is a ``(3, 3)`` float array whose rows are unit optical-density
vectors (R, G, B) of the stains; the third row is the residual channel when only
two stains are used.
"""

from __future__ import annotations

import numpy as np

from her2viewer.errors import StainError

#: Light intensity of clear glass (8-bit).
BACKGROUND_INTENSITY = 255.0
#: Pixels whose summed optical density is below this are treated as glass.
TISSUE_OD_THRESHOLD = 0.15


def stain_matrix(first, second, third=None) -> np.ndarray:
    """Build a stain matrix from two or three optical-density vectors.

    Parameters
    ----------
    first, second : array_like, shape (3,)
        RGB optical-density vectors of the two main stains (any positive scale).
    third : array_like, optional
        The third stain; by default the residual direction orthogonal to the
        first two (Ruifrok's complementary vector).

    Returns
    -------
    numpy.ndarray
        ``(3, 3)`` float64, rows normalised to unit length.

    Raises
    ------
    StainError
        When the vectors are zero or linearly dependent.
    """
    rows = [np.asarray(first, float), np.asarray(second, float)]
    rows.append(np.cross(rows[0], rows[1]) if third is None else np.asarray(third, float))
    matrix = np.stack(rows)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    if np.any(norms < 1e-9):
        raise StainError("A stain vector is zero; give three non-zero RGB optical densities.")
    matrix = matrix / norms
    if abs(np.linalg.det(matrix)) < 1e-6:
        raise StainError("The stain vectors are linearly dependent; they cannot be separated.")
    return matrix


#: Hematoxylin + DAB (Ruifrok & Johnston, as in ``skimage.color.hdx_from_rgb``).
HDAB = stain_matrix([0.650, 0.704, 0.286], [0.268, 0.570, 0.776])
#: Hematoxylin + eosin (Ruifrok & Johnston).
HE = stain_matrix([0.644, 0.717, 0.267], [0.093, 0.954, 0.283])


def _check_rgb(rgb: np.ndarray) -> np.ndarray:
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[-1] not in (3, 4):
        raise StainError(f"Expected an RGB image (height, width, 3), got shape {rgb.shape}.")
    return rgb[..., :3]


def rgb_to_od(rgb: np.ndarray) -> np.ndarray:
    """Convert 8-bit RGB to base-10 optical density ``-log10(I / 255)``.

    Parameters
    ----------
    rgb : numpy.ndarray
        ``(h, w, 3)`` uint8 image (an alpha channel is ignored).

    Returns
    -------
    numpy.ndarray
        ``(h, w, 3)`` float32 optical density; 0 for white, about 2.4 for black.
    """
    rgb = _check_rgb(rgb)
    if rgb.dtype == np.uint8:  # a lookup per level: a fraction of a log per pixel
        return _OD_OF_LEVEL[rgb]
    return _od(rgb.astype(np.float32))


def _od(intensity: np.ndarray) -> np.ndarray:
    return -np.log10(np.maximum(intensity, 1.0) / BACKGROUND_INTENSITY)


#: Optical density of each 8-bit level (float32, as :func:`rgb_to_od` computes it).
_OD_OF_LEVEL = _od(np.arange(256, dtype=np.float32))


def od_to_rgb(od: np.ndarray) -> np.ndarray:
    """Convert base-10 optical density back to 8-bit RGB (inverse of :func:`rgb_to_od`)."""
    rgb = BACKGROUND_INTENSITY * np.power(10.0, -np.asarray(od, np.float32))
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def separate_stains(rgb: np.ndarray, matrix: np.ndarray = HDAB) -> np.ndarray:
    """Unmix an RGB image into per-stain optical densities (colour deconvolution).

    Parameters
    ----------
    rgb : numpy.ndarray
        ``(h, w, 3)`` uint8 image.
    matrix : numpy.ndarray
        ``(3, 3)`` stain matrix (rows are stain OD vectors), e.g. :data:`HDAB` or
        :data:`HE` or one from :func:`~her2viewer.stain.macenko.estimate_stain_matrix`.

    Returns
    -------
    numpy.ndarray
        ``(h, w, 3)`` float32 stain amounts in OD units, channel order of the
        matrix rows (for :data:`HDAB`: hematoxylin, DAB, residual).
    """
    od = rgb_to_od(rgb)
    return od @ np.linalg.inv(np.asarray(matrix, np.float64)).astype(np.float32)


def combine_stains(stains: np.ndarray, matrix: np.ndarray = HDAB) -> np.ndarray:
    """Recompose RGB from per-stain amounts (inverse of :func:`separate_stains`)."""
    od = np.asarray(stains, np.float32) @ np.asarray(matrix, np.float32)
    return od_to_rgb(np.maximum(od, 0.0))


def tissue_pixels(rgb: np.ndarray, threshold: float = TISSUE_OD_THRESHOLD) -> np.ndarray:
    """Return the pixels that absorb light (summed OD above ``threshold``), not glass.

    This is a per-pixel background exclusion for measurements inside a region; whole
    slide tissue detection is :func:`her2viewer.tissue.segment_tissue`.
    """
    return rgb_to_od(rgb).sum(axis=-1) > threshold
