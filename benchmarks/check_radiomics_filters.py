"""Cross-check our image filters and filtered-image features against PyRadiomics itself.

Needs PyRadiomics in the environment (only for this script; the project does not
depend on it): ``pip install pyradiomics-bhklab``.

Usage: .venv/bin/python benchmarks/check_radiomics_filters.py
Extracts breast1 (tests/data/radiomics) with every image type both ways (bin width 25,
voxelArrayShift 2000, LoG sigma 1 and 3 mm, wavelet coif1 level 1) and prints one
JSON object: per image type the number of features, the largest relative feature
difference (and which feature), how many features agree within 1e-4 and 1e-2, and
the largest voxel difference of the filtered image relative to its value range.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk  # noqa: N813 - SimpleITK's own name
from radiomics import featureextractor, imageoperations

from her2viewer.radiomics.features import RadiomicsSettings, extract_features
from her2viewer.radiomics.filters import PYRADIOMICS_NAMES, filtered_images
from her2viewer.radiomics.volume import load_volume

DATA = Path(__file__).resolve().parents[1] / "tests" / "data" / "radiomics"  # pyradiomics, BSD-3
IMAGE_TYPES = {
    "original": {},
    "log": {"sigma": [1.0, 3.0]},
    "wavelet": {},
    "square": {},
    "squareroot": {},
    "logarithm": {},
    "exponential": {},
    "gradient": {},
}


def theirs(image_path: Path, mask_path: Path) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """PyRadiomics' features and filtered images (as numpy arrays, z-y-x)."""
    extractor = featureextractor.RadiomicsFeatureExtractor(binWidth=25, voxelArrayShift=2000)
    extractor.disableAllImageTypes()
    for key, params in IMAGE_TYPES.items():
        extractor.enableImageTypeByName(PYRADIOMICS_NAMES[key], customArgs=params)
    extractor.enableAllFeatures()
    result = extractor.execute(str(image_path), str(mask_path))
    features = {
        k: float(v) for k, v in result.items() if not k.startswith("diagnostics") and np.isscalar(v)
    }
    features |= {k: float(np.asarray(v)) for k, v in result.items() if k not in features
                 and not k.startswith("diagnostics")}  # fmt: skip
    image, mask = sitk.ReadImage(str(image_path)), sitk.ReadImage(str(mask_path))
    arrays = {}
    for key, params in IMAGE_TYPES.items():
        make = getattr(imageoperations, f"get{PYRADIOMICS_NAMES[key]}Image")
        for derived, name, _ in make(image, mask, **params):
            arrays[name] = sitk.GetArrayFromImage(derived).astype(np.float64)
    return features, arrays


def compare(ours: dict[str, float], reference: dict[str, float]) -> dict:
    """Per image type: worst relative difference and agreement counts."""
    out: dict[str, dict] = {}
    for name, expected in reference.items():
        image_type = name.split("_")[0]
        got = ours.get(name)
        rel = (
            np.inf
            if got is None
            else abs(got - expected) / max(abs(expected), 1e-12)
            if abs(got - expected) > 1e-12
            else 0.0
        )
        entry = out.setdefault(
            image_type,
            {
                "features": 0,
                "max_rel_diff": 0.0,
                "worst": "",
                "within_1e-4": 0,
                "within_1e-2": 0,
            },  # fmt: skip
        )
        entry["features"] += 1
        entry["within_1e-4"] += rel <= 1e-4
        entry["within_1e-2"] += rel <= 1e-2
        if rel > entry["max_rel_diff"]:
            entry["max_rel_diff"], entry["worst"] = float(rel), name
    return out


def main() -> None:
    logging.getLogger("radiomics").setLevel(logging.ERROR)
    image_path, mask_path = DATA / "breast1_image.nrrd", DATA / "breast1_label.nrrd"
    image, mask = load_volume(image_path), load_volume(mask_path)
    start = time.perf_counter()
    settings = RadiomicsSettings(voxel_array_shift=2000, image_types=IMAGE_TYPES)
    ours = extract_features(image, mask, settings)
    ours_s = time.perf_counter() - start
    start = time.perf_counter()
    reference, arrays = theirs(image_path, mask_path)
    theirs_s = time.perf_counter() - start
    report = compare(ours, reference)
    for name, derived in filtered_images(image, IMAGE_TYPES):
        ref = arrays[name]
        spread = float(ref.max() - ref.min()) or 1.0
        report[name]["image_max_diff_over_range"] = float(
            np.abs(derived.array - ref).max() / spread
        )
    print(
        json.dumps(
            {
                "case": "breast1",
                "features_ours": len(ours),
                "features_pyradiomics": len(reference),
                "missing_in_ours": sorted(set(reference) - set(ours))[:5],
                "extra_in_ours": sorted(set(ours) - set(reference))[:5],
                "seconds_ours": round(ours_s, 2),
                "seconds_pyradiomics": round(theirs_s, 2),
                "image_types": report,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
