"""Annotation transfer error across synthetic pairs with known transforms.

Each synthetic pair is registered with the automatic registration; a set of
annotations (rectangles, ellipses, irregular polygons, polylines, point sets) placed
in the tissue of one slide is carried to the other with
:func:`her2viewer.annotations.transfer.transfer`, in both directions, and every
vertex is compared with where the true ``transform_ihc_to_he`` puts it. The same is
done with an affine fitted to five landmark pairs picked at integer pixels (as a
click does). Prints JSON: mean and max vertex error in level-0 px per pair and
overall; the target is < 2 level-0 px (the synthetic transforms are affine).

    .venv/bin/python benchmarks/bench_transfer.py [--cases 4] [--seed 11] [--size 3000x2400]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import cv2
import numpy as np
import shapely

from her2viewer.annotations.model import Annotation
from her2viewer.annotations.transfer import fit_landmarks, transfer
from her2viewer.geometry.shapes import apply_matrix, ellipse, rectangle
from her2viewer.registration import register_slides
from her2viewer.slide import open_slide
from her2viewer.slide.synthetic import write_cohort

TARGET_PX = 2.0
LANDMARKS = 5


def _tissue_points(mask_path: Path, downsample: float, n: int, rng) -> np.ndarray:
    """``n`` random level-0 points inside a tissue mask (pixel centres)."""
    ys, xs = np.nonzero(cv2.imread(str(mask_path), 0))
    pick = rng.choice(len(xs), n, replace=False)
    return (np.stack([xs[pick], ys[pick]], 1) + 0.5) * downsample


def _annotations(centres: np.ndarray, rng) -> list[Annotation]:
    """One annotation of every kind around each centre (sizes 100-400 level-0 px)."""
    anns = []
    for cx, cy in centres:
        r = rng.uniform(50, 200)
        angles = np.sort(rng.uniform(0, 2 * np.pi, 12))
        radii = r * rng.uniform(0.5, 1.0, 12)
        blob = shapely.Polygon(np.c_[cx + radii * np.cos(angles), cy + radii * np.sin(angles)])
        line = shapely.LineString(np.c_[cx + np.linspace(-r, r, 5), cy + rng.normal(0, r / 4, 5)])
        dots = shapely.MultiPoint(np.c_[cx, cy] + rng.normal(0, r / 2, (6, 2)))
        anns += [
            Annotation(rectangle(cx - r, cy - r / 2, 2 * r, r), kind="rectangle"),
            Annotation(ellipse(cx, cy, r, r / 2), kind="ellipse"),
            Annotation(shapely.make_valid(blob), kind="polygon"),
            Annotation(line, kind="polyline"),
            Annotation(dots, kind="points"),
        ]
    return anns


def _vertex_errors(copies: list[Annotation], truth: list) -> np.ndarray:
    got = np.concatenate([shapely.get_coordinates(c.geometry) for c in copies])
    want = np.concatenate([shapely.get_coordinates(g) for g in truth])
    return np.hypot(*(got - want).T)


def _errors(anns, matrix, true_matrix, source: str) -> np.ndarray:
    """Vertex errors of ``anns`` carried by ``matrix`` against ``true_matrix``."""
    copies = transfer(anns, matrix, source=source)
    return _vertex_errors(copies, [apply_matrix(a.geometry, true_matrix) for a in anns])


def _summary(errors: np.ndarray) -> dict:
    return {"mean_px": float(errors.mean()), "max_px": float(errors.max())}


def _case(case: Path, rng) -> dict:
    truth = json.loads((case / "truth.json").read_text())
    ihc_to_he = np.array(truth["transform_ihc_to_he"])
    downsample = truth["mask_downsample"]
    with open_slide(case / "he.svs") as he, open_slide(case / "ihc.svs") as ihc:
        registration = register_slides(he, ihc)
    he_anns = _annotations(_tissue_points(case / "tissue_mask.png", downsample, 8, rng), rng)
    ihc_anns = _annotations(_tissue_points(case / "ihc_tissue_mask.png", downsample, 8, rng), rng)
    he_to_ihc = np.linalg.inv(ihc_to_he)
    auto = np.concatenate(
        [
            _errors(he_anns, np.linalg.inv(registration.matrix), he_to_ihc, "he"),
            _errors(ihc_anns, registration.matrix, ihc_to_he, "ihc"),
        ]
    )
    clicks_ihc = np.round(_tissue_points(case / "ihc_tissue_mask.png", downsample, LANDMARKS, rng))
    clicks_he = np.round(clicks_ihc @ ihc_to_he[:2, :2].T + ihc_to_he[:2, 2])
    fit = fit_landmarks(clicks_ihc, clicks_he)
    landmarks = _errors(ihc_anns, fit.matrix, ihc_to_he, "ihc")
    return {
        "case": case.name,
        "vertices": int(auto.size // 2),
        "registration_error_px": registration.error_px,
        "automatic": _summary(auto),
        "landmarks": _summary(landmarks) | {"fit_rms_px": fit.rms_px},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cases", type=int, default=4)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--size", default="3000x2400")
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))
    rng = np.random.default_rng(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        write_cohort(Path(tmp), args.cases, args.seed, size)
        pairs = [_case(case, rng) for case in sorted(p for p in Path(tmp).iterdir() if p.is_dir())]
    worst = {
        method: {
            "mean_px": max(p[method]["mean_px"] for p in pairs),
            "max_px": max(p[method]["max_px"] for p in pairs),
        }
        for method in ("automatic", "landmarks")
    }
    print(
        json.dumps(
            {
                "cohort": {"cases": args.cases, "seed": args.seed, "size": args.size},
                "target_px": TARGET_PX,
                "worst": worst,
                "within_target": {m: w["max_px"] < TARGET_PX for m, w in worst.items()},
                "pairs": pairs,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
