"""Model predictions for a study's cases from a CLAM bundle (``study create --model BUNDLE``).

Each case's H&E slide goes through :func:`her2viewer.analysis.clam.analyse_clam`;
the predicted class becomes the model's answer, the summed probability of the
question's positive labels its probability, and the attention heatmap the layer
shown in an assisted arm.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from her2viewer.errors import StudyError
from her2viewer.study.definition import CaseRow, Question
from her2viewer.study.store import ModelOverlay


def _labels(class_names: list[str], question: Question) -> list[str]:
    if not class_names:
        raise StudyError("the model bundle does not name its classes; it cannot answer a study.")
    try:
        return [question.normalise(name) for name in class_names]
    except StudyError as exc:
        raise StudyError(
            f"the model's classes ({', '.join(class_names)}) do not match the study's "
            f"answers ({', '.join(question.labels)})."
        ) from exc


def predict_cases(
    cases: list[CaseRow],
    question: Question,
    bundle: Path,
    options=None,
    encoder=None,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[dict[str, tuple[str, float | None]], dict[str, ModelOverlay], list[str]]:
    """Run a CLAM bundle on every case whose H&E slide exists.

    Parameters
    ----------
    cases : list of CaseRow
        The study's cases.
    question : Question
        The study's question; the bundle's class names must be among its answers.
    bundle : Path
        CLAM bundle (or checkpoint with ``encoder``).
    options : ClamOptions, optional
        Patch size, magnification, device ... (defaults of the analysis).
    encoder : Encoder, optional
        Overrides the bundle's encoder.
    progress : callable, optional
        ``progress(done, total)`` after each case.

    Returns
    -------
    predictions : dict
        case_id -> (label, probability of positive or None).
    overlays : dict
        case_id -> attention heatmap.
    skipped : list of str
        Case ids without an H&E slide file.
    """
    from her2viewer.analysis.clam import analyse_clam
    from her2viewer.slide import open_slide

    predictions, overlays, skipped = {}, {}, []
    for i, case in enumerate(cases):
        if not Path(case.he_path).is_file():
            skipped.append(case.case_id)
            continue
        with open_slide(case.he_path) as slide:
            heat = analyse_clam(slide, bundle, options, encoder=encoder)
        labels = _labels(list(heat.class_names), question)
        probs = np.asarray(heat.prediction.probabilities, dtype=float)
        if not np.isfinite(probs).all() or np.isinf(heat.values).any():
            raise StudyError(
                f"the model gave non-finite outputs on case {case.case_id} ({case.he_path}); "
                "check the model bundle and the slide."
            )
        positive = None
        if question.binary:
            positive = float(sum(p for p, lab in zip(probs, labels, strict=True)
                                 if question.is_positive(lab)))  # fmt: skip
        predictions[case.case_id] = (labels[heat.prediction.prediction], positive)
        overlays[case.case_id] = ModelOverlay("model attention", heat.downsample, heat.values)
        if progress is not None:
            progress(i + 1, len(cases))
    return predictions, overlays, skipped
