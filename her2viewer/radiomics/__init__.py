"""CT/MR radiomics (seed 001): volume + ROI -> PyRadiomics-defined features -> PCA -> LR/RF/MLP.

Features come from the original image and the filtered images configured as in a
PyRadiomics parameter file (LoG, wavelet, square, ...; :mod:`.filters`, :mod:`.params`).

>>> from her2viewer.radiomics import load_volume, extract_features  # doctest: +SKIP
>>> features = extract_features(load_volume("ct.nrrd"), load_volume("roi.nrrd"))  # doctest: +SKIP
>>> settings = read_params("Params.yaml")  # doctest: +SKIP
"""

from her2viewer.radiomics.features import (
    FEATURE_CLASSES,
    RadiomicsSettings,
    extract_features,
)
from her2viewer.radiomics.filters import IMAGE_TYPES, filtered_images, parse_filter_spec
from her2viewer.radiomics.params import read_params, settings_for_features
from her2viewer.radiomics.predict import Prediction, predict_case
from her2viewer.radiomics.volume import (
    Volume,
    load_volume,
    read_dicom_series,
    write_nifti,
    write_nrrd,
)

__all__ = [
    "FEATURE_CLASSES",
    "IMAGE_TYPES",
    "Prediction",
    "RadiomicsSettings",
    "Volume",
    "extract_features",
    "filtered_images",
    "load_volume",
    "parse_filter_spec",
    "predict_case",
    "read_params",
    "settings_for_features",
    "read_dicom_series",
    "write_nifti",
    "write_nrrd",
]
