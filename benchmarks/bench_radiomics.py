"""Radiomics: agreement with PyRadiomics' breast1 baseline and extraction time.

Usage: .venv/bin/python benchmarks/bench_radiomics.py [ROI_RADIUS_VOXELS]   (default 20)
Reports how many of the 107 breast1 baseline features match within 1e-3 and 1e-4
relative, the worst relative difference, and extraction seconds for breast1 and for
a synthetic 64x160x160 volume with a spherical ROI of the given radius, on the
original image and with PyRadiomics' usual filters (LoG sigma 1, 3 mm + wavelet).
Prints one JSON object.
"""

from __future__ import annotations

import csv
import json
import sys
import time
from pathlib import Path

import numpy as np

from her2viewer.radiomics.features import RadiomicsSettings, extract_features
from her2viewer.radiomics.volume import Volume, load_volume

DATA = Path(__file__).resolve().parents[1] / "tests" / "data" / "radiomics"  # pyradiomics, BSD-3
FILTERED = {"original": {}, "log": {"sigma": (1.0, 3.0)}, "wavelet": {}}


def baseline(case: str = "breast1") -> dict[str, float]:
    values = {}
    for path in sorted((DATA / "baseline").glob("baseline_*.csv")):
        if "shape2D" in path.name:
            continue
        rows = list(csv.reader(path.open()))
        col = rows[0].index(case)
        values |= {r[0]: float(r[col]) for r in rows if r[0].startswith("original_")}
    return values


def timed(image, mask, settings, repeat=3) -> tuple[dict, float]:
    best = np.inf
    for _ in range(repeat):
        start = time.perf_counter()
        features = extract_features(image, mask, settings)
        best = min(best, time.perf_counter() - start)
    return features, best


def sphere_case(radius: int) -> tuple[Volume, Volume]:
    rng = np.random.default_rng(0)
    z, y, x = np.ogrid[:64, :160, :160]
    inside = ((z - 32) * 2.0) ** 2 + ((y - 80) * 0.8) ** 2 + ((x - 80) * 0.8) ** 2 <= (
        radius * 0.8
    ) ** 2
    image = rng.normal(300, 60, inside.shape).astype(np.int16)
    return Volume(image, (2.0, 0.8, 0.8)), Volume(inside.astype(np.uint8), (2.0, 0.8, 0.8))


def main() -> None:
    radius = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    image, mask = load_volume(DATA / "breast1_image.nrrd"), load_volume(DATA / "breast1_label.nrrd")
    expected = baseline()
    features, seconds = timed(image, mask, RadiomicsSettings(voxel_array_shift=2000))
    rel = {k: abs(features[k] - v) / max(abs(v), 1e-12) for k, v in expected.items()}
    big_image, big_mask = sphere_case(radius)
    _, big_seconds = timed(big_image, big_mask, RadiomicsSettings(), repeat=1)
    filters = RadiomicsSettings(image_types=FILTERED)
    filtered, filtered_seconds = timed(image, mask, filters)
    _, big_filtered_seconds = timed(big_image, big_mask, filters, repeat=1)
    print(
        json.dumps(
            {
                "benchmark": "radiomics",
                "breast1_features": len(expected),
                "match_rel_1e-3": sum(r < 1e-3 for r in rel.values()),
                "match_rel_1e-4": sum(r < 1e-4 for r in rel.values()),
                "worst_rel_diff": max(rel.values()),
                "worst_feature": max(rel, key=rel.get),
                "breast1_roi_voxels": int((mask.array == 1).sum()),
                "breast1_seconds": round(seconds, 4),
                "sphere_roi_voxels": int(big_mask.array.sum()),
                "sphere_seconds": round(big_seconds, 3),
                "filters": "original + log sigma 1, 3 mm + wavelet coif1 (11 images)",
                "filtered_features": len(filtered),
                "breast1_filtered_seconds": round(filtered_seconds, 3),
                "sphere_filtered_seconds": round(big_filtered_seconds, 3),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
