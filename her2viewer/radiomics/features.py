"""Radiomic features of a volume inside an ROI, following PyRadiomics' definitions.

The feature classes and names are PyRadiomics' (``<image type>_<class>_<Feature>``):
first order, 3D shape, GLCM, GLRLM, GLSZM, GLDM and NGTDM with fixed bin width
discretisation, on the original image and on each configured filtered image
(:mod:`her2viewer.radiomics.filters`; shape only on the original, as PyRadiomics).
Each value follows the formulas in the PyRadiomics documentation (van Griethuysen
et al., Cancer Research 2017), and is checked against PyRadiomics' own published
baseline for its breast1 test case (``tests/radiomics/test_radiomics_features.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from her2viewer.errors import RadiomicsError
from her2viewer.radiomics.filters import filtered_images
from her2viewer.radiomics.shape import shape_features
from her2viewer.radiomics.texture import (
    glcm_features,
    gldm_features,
    glrlm_features,
    glszm_features,
    ngtdm_features,
)
from her2viewer.radiomics.volume import Volume

FEATURE_CLASSES = ("firstorder", "shape", "glcm", "glrlm", "glszm", "gldm", "ngtdm")
#: Most gray levels a bin width may give over an ROI (texture matrices grow with its square).
MAX_GRAY_LEVELS = 4096


@dataclass(frozen=True)
class RadiomicsSettings:
    """Extraction settings, named and defaulted as in PyRadiomics.

    Attributes
    ----------
    bin_width : float
        Fixed bin width for discretisation (PyRadiomics ``binWidth``, 25).
    label : int
        Mask value of the ROI (``label``, 1).
    voxel_array_shift : float
        Added to intensities in Energy, Total Energy and RMS (``voxelArrayShift``, 0;
        PyRadiomics' baseline files use 2000).
    classes : tuple of str
        Feature classes to compute.
    image_types : dict
        Image type -> filter parameters (PyRadiomics ``imageType``), in order; see
        :mod:`her2viewer.radiomics.filters`. Default: the original image only.
    features : dict
        Class -> the only feature names to keep (PyRadiomics ``featureClass`` lists);
        a class not named here keeps all of its features.
    """

    bin_width: float = 25.0
    label: int = 1
    voxel_array_shift: float = 0.0
    classes: tuple[str, ...] = FEATURE_CLASSES
    image_types: dict[str, dict] = field(default_factory=lambda: {"original": {}})
    features: dict[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass
class RoiData:
    """The ROI cropped to its bounding box: raw values, discretised levels and mask."""

    image: np.ndarray
    levels: np.ndarray
    mask: np.ndarray
    spacing: tuple[float, float, float]

    @property
    def values(self) -> np.ndarray:
        """Raw intensities inside the ROI."""
        return self.image[self.mask]


def check_roi(image: Volume, mask: Volume, label: int) -> np.ndarray:
    """Return the boolean ROI of ``mask`` for ``image``.

    Raises
    ------
    RadiomicsError
        When the mask's shape or spacing differs from the image's, or no voxel has ``label``.
    """
    if image.array.shape != mask.array.shape:
        raise RadiomicsError(
            f"Mask shape {mask.array.shape} does not match image shape {image.array.shape}; "
            "use the mask drawn on this image."
        )
    if not np.allclose(image.spacing, mask.spacing, rtol=1e-4):
        raise RadiomicsError(
            f"Mask spacing {mask.spacing} does not match image spacing {image.spacing}."
        )
    roi = mask.array == label
    if not roi.any():
        raise RadiomicsError(f"The mask has no voxel with label {label}; nothing to measure.")
    return roi


def discretize(values: np.ndarray, bin_width: float) -> np.ndarray:
    """Fixed bin width discretisation to levels 1, 2, ... (PyRadiomics ``binImage``).

    Bin edges start at ``min - (min % bin_width)`` and step by ``bin_width``; a flat
    region gets one bin.

    Raises
    ------
    RadiomicsError
        When the bin width gives more than :data:`MAX_GRAY_LEVELS` levels over the ROI.
    """
    low, high = float(values.min()), float(values.max())
    n_bins = (high - low) / bin_width
    if not n_bins < MAX_GRAY_LEVELS:
        raise RadiomicsError(
            f"A bin width of {bin_width:g} gives {n_bins:.3g} gray levels over the ROI "
            f"(at most {MAX_GRAY_LEVELS}); use a larger bin width."
        )
    edges = np.arange(low - (low % bin_width), high + 2 * bin_width, bin_width)
    if len(edges) == 1:
        edges = np.array([edges[0] - 0.5, edges[0] + 0.5])
    return np.digitize(values, edges)


def prepare_roi(image: Volume, mask: Volume, settings: RadiomicsSettings) -> RoiData:
    """Check the inputs, crop to the ROI's bounding box and discretise.

    Raises
    ------
    RadiomicsError
        On a shape or spacing mismatch, or an empty ROI.
    """
    roi = check_roi(image, mask, settings.label)
    bounds = [np.flatnonzero(roi.any(axis=tuple(a for a in range(3) if a != d))) for d in range(3)]
    box = tuple(slice(int(b[0]), int(b[-1]) + 1) for b in bounds)
    crop = image.array[box].astype(np.float64)
    crop_mask = roi[box]
    levels = np.zeros(crop.shape, dtype=np.int64)
    levels[crop_mask] = discretize(crop[crop_mask], settings.bin_width)
    return RoiData(crop, levels, crop_mask, tuple(float(s) for s in image.spacing))


def firstorder_features(roi: RoiData, voxel_array_shift: float = 0.0) -> dict[str, float]:
    """First-order statistics of the ROI intensities (PyRadiomics ``firstorder``)."""
    x = roi.values
    n = x.size
    eps = np.spacing(1)
    shifted = x + voxel_array_shift
    energy = float(np.sum(shifted**2))
    p10, p25, p50, p75, p90 = np.percentile(x, [10, 25, 50, 75, 90])
    mean = x.mean()
    dev = x - mean
    m2, m3, m4 = np.mean(dev**2), np.mean(dev**3), np.mean(dev**4)
    robust = x[(x >= p10) & (x <= p90)]
    _, counts = np.unique(roi.levels[roi.mask], return_counts=True)
    p = counts / n
    return {
        "Energy": energy,
        "TotalEnergy": energy * float(np.prod(roi.spacing)),
        "Entropy": float(-np.sum(p * np.log2(p + eps))),
        "Minimum": float(x.min()),
        "10Percentile": float(p10),
        "90Percentile": float(p90),
        "Maximum": float(x.max()),
        "Mean": float(mean),
        "Median": float(p50),
        "InterquartileRange": float(p75 - p25),
        "Range": float(x.max() - x.min()),
        "MeanAbsoluteDeviation": float(np.mean(np.abs(dev))),
        "RobustMeanAbsoluteDeviation": float(np.mean(np.abs(robust - robust.mean()))),
        "RootMeanSquared": float(np.sqrt(energy / n)),
        "Skewness": float(m3 / m2**1.5) if m2 > 0 else 0.0,
        "Kurtosis": float(m4 / m2**2) if m2 > 0 else 0.0,
        "Variance": float(m2),
        "Uniformity": float(np.sum(p**2)),
    }


def _class_features(name: str, roi: RoiData, settings: RadiomicsSettings) -> dict[str, float]:
    """One feature class of one (original or filtered) image, limited to the chosen names."""
    compute = {
        "firstorder": lambda: firstorder_features(roi, settings.voxel_array_shift),
        "shape": lambda: shape_features(roi.mask, roi.spacing),
        "glcm": lambda: glcm_features(roi.levels, roi.mask),
        "glrlm": lambda: glrlm_features(roi.levels, roi.mask),
        "glszm": lambda: glszm_features(roi.levels, roi.mask),
        "gldm": lambda: gldm_features(roi.levels, roi.mask),
        "ngtdm": lambda: ngtdm_features(roi.levels, roi.mask),
    }
    values = compute[name]()
    keep = settings.features.get(name)
    return {k: v for k, v in values.items() if not keep or k in keep}


def extract_features(
    image: Volume, mask: Volume, settings: RadiomicsSettings | None = None, context=None
) -> dict[str, float]:
    """Compute radiomic features of ``image`` inside ``mask``.

    Parameters
    ----------
    image : Volume
        CT or MR volume.
    mask : Volume
        ROI mask of the same shape and spacing; voxels equal to ``settings.label`` count.
    settings : RadiomicsSettings, optional
        Defaults follow PyRadiomics (bin width 25, label 1, original image only).
    context : JobContext, optional
        Gets a progress report per derived image and may cancel between them.

    Returns
    -------
    dict
        ``<image type>_<class>_<Feature>`` -> value: shape first (on the original image,
        as PyRadiomics), then per image type the other classes in :data:`FEATURE_CLASSES`
        order.

    Raises
    ------
    RadiomicsError
        On mismatched image and mask, an empty ROI, an unknown feature class or a bad
        filter configuration.
    """
    settings = settings or RadiomicsSettings()
    unknown = sorted((set(settings.classes) | set(settings.features)) - set(FEATURE_CLASSES))
    if unknown:
        raise RadiomicsError(
            f"Unknown feature class {unknown[0]!r}; choose from {', '.join(FEATURE_CLASSES)}."
        )
    check_roi(image, mask, settings.label)
    out: dict[str, float] = {}
    if "shape" in settings.classes:
        shape = _class_features("shape", prepare_roi(image, mask, settings), settings)
        out.update({f"original_shape_{k}": v for k, v in shape.items()})
    classes = [c for c in FEATURE_CLASSES if c in settings.classes and c != "shape"]
    if not classes:
        return out
    total = len(settings.image_types)
    for done, (image_type, derived) in enumerate(filtered_images(image, settings.image_types)):
        if context is not None:
            context.check()
            context.report(min(done, total), total, image_type)
        roi = prepare_roi(derived, mask, settings)
        for name in classes:
            values = _class_features(name, roi, settings)
            out.update({f"{image_type}_{name}_{k}": v for k, v in values.items()})
    return out
