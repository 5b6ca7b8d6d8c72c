"""CT/MR radiomics (seed 001): volume + ROI -> PyRadiomics-defined features -> PCA -> LR/RF/MLP.

>>> from her2viewer.radiomics import load_volume, extract_features  # doctest: +SKIP
>>> features = extract_features(load_volume("ct.nrrd"), load_volume("roi.nrrd"))  # doctest: +SKIP
"""

from her2viewer.radiomics.features import (
    FEATURE_CLASSES,
    RadiomicsSettings,
    extract_features,
)
from her2viewer.radiomics.volume import (
    Volume,
    load_volume,
    read_dicom_series,
    write_nifti,
    write_nrrd,
)

__all__ = [
    "FEATURE_CLASSES",
    "RadiomicsSettings",
    "Volume",
    "extract_features",
    "load_volume",
    "read_dicom_series",
    "write_nifti",
    "write_nrrd",
]
