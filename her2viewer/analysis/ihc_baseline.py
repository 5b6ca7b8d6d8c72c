"""Seed 003's stain-intensity baseline: max over 224 px tiles of mean DAB, logistic regression.

Each IHC slide is cut into non-overlapping 224 x 224 tiles at 20x over the tissue;
the slide descriptor is the maximum of the tiles' mean DAB optical density
(multiple-instance learning with max pooling). Two logistic regressions predict
the IHC score (0-3) and the HER2 status. The model is stored as plain JSON.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression

from her2viewer.analysis.ihc import tissue_tile_grid
from her2viewer.errors import StainError
from her2viewer.outputs import write_text_atomic
from her2viewer.slide import Slide, open_slide
from her2viewer.stain import separate_stains
from her2viewer.tables import read_csv_rows

TILE = 224
MODEL_KIND = "her2viewer.ihc_stain_intensity_baseline"
LABEL_COLUMNS = ("ihc_path", "ihc_score", "her2_status")
STATUSES = ("negative", "positive")


def max_tile_dab(slide: Slide, tile: int = TILE) -> float:
    """Return the slide descriptor: the largest mean DAB OD over its tissue tiles.

    Raises
    ------
    NotEvaluableError
        When the slide has no tissue tile.
    """
    grid = tissue_tile_grid(slide, 20.0, tile)
    means = [
        float(np.maximum(separate_stains(grid.read_patch(slide, i))[..., 1], 0).mean())
        for i in range(len(grid.coords))
    ]
    return max(means)


def read_labels(labels_csv: str | os.PathLike) -> list[dict]:
    """Read a cohort CSV (``ihc_path``, ``ihc_score``, ``her2_status``; paths relative to it).

    Raises
    ------
    StainError
        When the file is missing or unreadable, lacks a column, or a row has an IHC
        score other than 0-3 or a status other than negative/positive.
    """
    path = Path(labels_csv)
    try:
        rows = read_csv_rows(path, LABEL_COLUMNS, StainError, "Labels CSV")
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise StainError(f"cannot read the labels CSV {path}: {exc}.") from exc
    for number, row in enumerate(rows, start=2):
        if row["ihc_score"] not in ("0", "1", "2", "3") or row["her2_status"] not in STATUSES:
            raise StainError(
                f"{path.name} line {number}: ihc_score must be 0-3 and her2_status "
                f"negative or positive, got {row['ihc_score']!r} and {row['her2_status']!r}."
            )
        row["ihc_path"] = str(path.parent / row["ihc_path"])
    return rows


def _logistic(x: np.ndarray, y: np.ndarray) -> LogisticRegression:
    if len(set(y.tolist())) < 2:
        raise StainError("Training needs at least two different labels.")
    return LogisticRegression(class_weight="balanced", C=10.0, max_iter=1000).fit(x, y)


def _dump(model: LogisticRegression) -> dict:
    return {
        "classes": model.classes_.tolist(),
        "coef": model.coef_.tolist(),
        "intercept": model.intercept_.tolist(),
    }


def _load(data: dict) -> LogisticRegression:
    model = LogisticRegression()
    model.classes_ = np.asarray(data["classes"])
    model.coef_ = np.asarray(data["coef"], float)
    model.intercept_ = np.asarray(data["intercept"], float)
    return model


@dataclass
class StainIntensityBaseline:
    """Two logistic regressions on the standardised max-tile mean DAB descriptor."""

    score_model: LogisticRegression
    status_model: LogisticRegression
    mean: float = 0.0
    scale: float = 1.0

    @classmethod
    def fit(cls, descriptors, scores, statuses) -> StainIntensityBaseline:
        """Fit on descriptors (one float per slide), IHC scores and statuses."""
        values = np.asarray(descriptors, float)
        mean, scale = float(values.mean()), float(values.std()) or 1.0
        x = ((values - mean) / scale).reshape(-1, 1)
        score_model = _logistic(x, np.asarray(scores, int))
        return cls(score_model, _logistic(x, np.asarray(statuses)), mean, scale)

    def predict(self, descriptors) -> tuple[np.ndarray, np.ndarray]:
        """Return predicted IHC scores and statuses."""
        x = ((np.asarray(descriptors, float) - self.mean) / self.scale).reshape(-1, 1)
        return self.score_model.predict(x), self.status_model.predict(x)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the model as JSON."""
        data = {
            "kind": MODEL_KIND,
            "tile": TILE,
            "descriptor": "max over 224 px 20x tiles of mean DAB OD",
            "standardise": {"mean": self.mean, "scale": self.scale},
            "score": _dump(self.score_model),
            "status": _dump(self.status_model),
        }
        return write_text_atomic(path, json.dumps(data, indent=2))

    @classmethod
    def load(cls, path: str | os.PathLike) -> StainIntensityBaseline:
        """Read a model written by :meth:`save`.

        Raises
        ------
        StainError
            When the file is not such a model, or any of its numbers is NaN or
            infinite, or its scale is not positive.
        """
        try:
            data = json.loads(Path(path).read_text())
            if data.get("kind") != MODEL_KIND:
                raise KeyError("kind")
            norm = data["standardise"]
            model = cls(
                _load(data["score"]),
                _load(data["status"]),
                float(norm["mean"]),
                float(norm["scale"]),
            )
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise StainError(f"{path} is not a stain-intensity baseline model: {exc}.") from exc
        if not model.is_finite():
            raise StainError(
                f"{path} holds NaN, infinite or zero-scale numbers, so no result can be given "
                "from it."
            )
        return model

    def is_finite(self) -> bool:
        """Whether every number of the model is finite and the scale is positive."""
        numbers = [self.mean, self.scale]
        for part in (self.score_model, self.status_model):
            numbers += [*np.ravel(part.coef_), *np.ravel(part.intercept_)]
        return bool(np.all(np.isfinite(numbers))) and self.scale > 0


def cohort_descriptors(rows: list[dict]) -> np.ndarray:
    """Compute the descriptor of every IHC slide of a cohort."""
    values = []
    for row in rows:
        with open_slide(row["ihc_path"]) as slide:
            values.append(max_tile_dab(slide))
    return np.asarray(values)
