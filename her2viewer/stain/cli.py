"""Verb ``ihc``: rule-based HER2 IHC score and seed 003's stain-intensity baseline."""

from __future__ import annotations

import json
import sys

import cv2
import numpy as np

from her2viewer.analysis.ihc import CATEGORIES, GUIDELINES, NOT_TUMOR, IhcRules, score_ihc
from her2viewer.analysis.ihc_baseline import (
    StainIntensityBaseline,
    cohort_descriptors,
    max_tile_dab,
    read_labels,
)
from her2viewer.errors import StainError
from her2viewer.slide import open_slide

#: Colours of the category map PNG (RGB), per category; not-tumor is white.
CATEGORY_COLOURS = np.array(
    [[70, 110, 200], [250, 220, 80], [245, 140, 40], [200, 30, 30]], np.uint8
)


def register(subparsers) -> None:
    """Add the ``ihc`` verb and its sub-verbs."""
    ihc = subparsers.add_parser("ihc", help="HER2 IHC: rule-based score, stain baseline")
    verbs = ihc.add_subparsers(dest="ihc_verb", metavar="ACTION")
    verbs.required = True
    score = verbs.add_parser("score", help="score a HER2 IHC slide or image (ASCO/CAP rules)")
    score.add_argument("slide", help="IHC slide or plain image (PNG/JPEG/TIFF)")
    score.add_argument("--guideline", choices=GUIDELINES, default="breast")
    score.add_argument("--json", action="store_true", help="print JSON")
    score.add_argument("--map", help="write the category map as a PNG")
    score.set_defaults(func=run_score)
    train = verbs.add_parser("train-baseline", help="fit seed 003's stain-intensity baseline")
    train.add_argument("labels", help="cohort CSV with ihc_path, ihc_score, her2_status")
    train.add_argument("-o", "--out", required=True, help="model JSON to write")
    train.set_defaults(func=run_train_baseline)
    predict = verbs.add_parser("predict-baseline", help="apply the stain-intensity baseline")
    predict.add_argument("model", help="model JSON from train-baseline")
    predict.add_argument("slide", help="IHC slide or image")
    predict.set_defaults(func=run_predict_baseline)


def _category_png(category_map: np.ndarray) -> np.ndarray:
    rgb = np.full(category_map.shape + (3,), 255, np.uint8)
    tumor = category_map != NOT_TUMOR
    rgb[tumor] = CATEGORY_COLOURS[category_map[tumor]]
    return rgb


def run_score(args) -> int:
    """Print the rule-based score of one IHC slide or image."""
    with open_slide(args.slide) as slide:
        result = score_ihc(slide, IhcRules.for_guideline(args.guideline))
    if args.map and not cv2.imwrite(args.map, _category_png(result.category_map)[..., ::-1]):
        raise StainError(f"Could not write the category map to {args.map}.")
    if args.json:
        print(json.dumps(result.to_json_dict(), indent=2))
        return 0
    label = f"{result.score}+" if result.score else "0"
    print(f"HER2 IHC score {label} ({result.guideline}): {result.recommendation}")
    for name in CATEGORIES:
        print(f"  {name:24s} {result.percentages[name]:5.1f} % of tumor-cell regions")
    dab = result.dab
    print(
        f"  DAB mean OD {dab.mean_od:.3f}, positive {100 * dab.positive_fraction:.1f} % "
        f"of tissue pixels, H-score {dab.h_score:.0f}"
    )
    return 0


def run_train_baseline(args) -> int:
    """Fit the two logistic regressions on a cohort and save them."""
    rows = read_labels(args.labels)
    descriptors = cohort_descriptors(rows)
    model = StainIntensityBaseline.fit(
        descriptors, [int(r["ihc_score"]) for r in rows], [r["her2_status"] for r in rows]
    )
    print(f"trained on {len(rows)} slides; model: {model.save(args.out)}", file=sys.stderr)
    return 0


def run_predict_baseline(args) -> int:
    """Print the baseline's IHC score and status for one slide."""
    model = StainIntensityBaseline.load(args.model)
    with open_slide(args.slide) as slide:
        descriptor = max_tile_dab(slide)
    scores, statuses = model.predict([descriptor])
    print(
        json.dumps(
            {
                "ihc_score": int(scores[0]),
                "her2_status": str(statuses[0]),
                "max_tile_dab": descriptor,
            }
        )
    )
    return 0
