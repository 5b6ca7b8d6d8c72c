"""Colour deconvolution, stain vectors, Macenko normalisation and DAB measures.

>>> from her2viewer.stain import HDAB, separate_stains, dab_measures
>>> dab = separate_stains(rgb, HDAB)[..., 1]  # doctest: +SKIP
"""

from her2viewer.stain.dab import (
    DabMeasures,
    DabThresholds,
    dab_measures,
    h_score,
    merge_measures,
    tile_means,
)
from her2viewer.stain.deconvolution import (
    HDAB,
    HE,
    combine_stains,
    od_to_rgb,
    rgb_to_od,
    separate_stains,
    stain_matrix,
    tissue_pixels,
)
from her2viewer.stain.macenko import MacenkoNormalizer, estimate_stain_matrix

__all__ = [
    "HDAB",
    "HE",
    "DabMeasures",
    "DabThresholds",
    "MacenkoNormalizer",
    "combine_stains",
    "dab_measures",
    "estimate_stain_matrix",
    "h_score",
    "merge_measures",
    "od_to_rgb",
    "rgb_to_od",
    "separate_stains",
    "stain_matrix",
    "tile_means",
    "tissue_pixels",
]
