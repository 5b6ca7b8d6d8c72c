"""Statistics of a reader study: readers and model against the truth and each other.

:func:`analyse` turns a study file into one plain dict (the report's
``summary.json``): per reader, per arm and for the model the accuracy,
sensitivity, specificity, balanced accuracy and F1 with 95% CIs and AUC where a
score exists; reader vs model McNemar tests on the same cases; pairwise Cohen's
kappa (quadratic-weighted for ordinal scores) and Fleiss' kappa; and the change
of each reader's accuracy from the unassisted to the assisted arm with a paired
McNemar test. Only the readers' current answers count.
"""

from __future__ import annotations

from functools import partial
from itertools import combinations

import numpy as np

from her2viewer.stats import metrics as m
from her2viewer.study.definition import CONFIDENCE_SCALES, Question, missing_slides
from her2viewer.study.store import Answer, StudyStore, utc_now

#: Name under which the model appears in tables.
MODEL = "model"


def _estimates(values: dict[str, m.Estimate]) -> dict[str, dict]:
    return {name: est.to_dict() for name, est in values.items()}


def reader_score(question: Question, answer: str, confidence: float | None) -> float | None:
    """A reader's rating of how likely a case is positive, for ROC analysis.

    Ordinal questions use the position of the answer on the scale; binary
    questions need a confidence: on the ``0-100`` scale it is the probability of
    positive; on the ``1-5`` scale it is certainty in the answer, so the score is
    ``+confidence`` for a positive and ``-confidence`` for a negative answer.
    Returns ``None`` when no score can be formed.
    """
    if question.ordinal:
        return float(question.labels.index(answer))
    if confidence is None or not question.binary:
        return None
    if question.confidence == "0-100":
        return confidence / 100.0
    return confidence if question.is_positive(answer) else -confidence


def model_score(question: Question, label: str, probability: float | None) -> float:
    """The model's rating of how likely a case is positive (:func:`reader_score`'s counterpart).

    Parameters
    ----------
    question : Question
        The study's question.
    label : str
        The model's answer (one of ``question.labels``).
    probability : float or None
        The model's probability of a positive case, when it gives one.

    Returns
    -------
    float
        ``probability`` when given; otherwise the position of ``label`` on an ordinal
        scale, or 1.0 for a positive and 0.0 for a negative label.
    """
    if probability is not None:
        return probability
    return (
        float(question.labels.index(label))
        if question.ordinal
        else float(question.is_positive(label))
    )


def _multiclass(truth, answers, question: Question, n_boot: int, seed: int) -> dict:
    labels = list(question.labels)
    weights = "quadratic" if question.ordinal else None
    result = m.multiclass_metrics(truth, answers, labels, weights, n_boot=n_boot, seed=seed)
    result["kappa_vs_truth"] = result.pop("kappa")
    return {
        "metrics": _estimates(result),
        "kappa_weights": weights,
        "confusion": {
            "labels": labels,
            "matrix": m.confusion_matrix(truth, answers, labels).tolist(),
        },
    }


def _rater_block(
    question: Question, truth: list[str], labels: list[str], scores: list, n_boot: int, seed: int
) -> dict:
    """Metrics of one rater (reader or model) on the cases it rated that have a truth."""
    block = {"n": len(truth)}
    if not truth:
        return block
    if question.binary:
        t = [question.is_positive(x) for x in truth]
        p = [question.is_positive(x) for x in labels]
        block["binary"] = _estimates(m.binary_metrics(t, p, n_boot=n_boot, seed=seed))
        sens, spec = block["binary"]["sensitivity"], block["binary"]["specificity"]
        block["operating_point"] = {
            "fpr": None if spec["value"] is None else 1.0 - spec["value"],
            "tpr": sens["value"],
        }
        if all(s is not None for s in scores):
            block["auc"] = m.auc_delong(t, scores).to_dict()
            fpr, tpr, thr = m.roc_curve(t, scores)
            finite = [float(x) if np.isfinite(x) else None for x in thr]
            block["roc"] = {"fpr": fpr.tolist(), "tpr": tpr.tolist(), "threshold": finite}
    if len(question.labels) > 2 or not question.binary:
        block["multiclass"] = _multiclass(truth, labels, question, n_boot, seed)
    else:
        t, a = np.asarray(truth), np.asarray(labels)
        block["confusion"] = {
            "labels": list(question.labels),
            "matrix": m.confusion_matrix(t, a, question.labels).tolist(),
        }
    return block


def _by_reader_arm(answers: list[Answer]) -> dict[tuple[str, str], dict[str, Answer]]:
    grouped: dict[tuple[str, str], dict[str, Answer]] = {}
    for a in answers:
        grouped.setdefault((a.reader, a.arm), {})[a.case_id] = a
    return grouped


def _reading_time(answers: dict[str, Answer]) -> dict:
    seconds = [a.seconds for a in answers.values() if a.seconds is not None]
    if not seconds:
        return {"n": 0}
    values = np.asarray(seconds)
    return {
        "n": len(seconds),
        "mean": float(values.mean()),
        "median": float(np.median(values)),
        "min": float(values.min()),
        "max": float(values.max()),
        "total": float(values.sum()),
    }


def _reader_vs_model(
    grouped, truth: dict[str, str], predictions: dict[str, tuple[str, float | None]]
) -> list[dict]:
    rows = []
    for (reader, arm), answers in sorted(grouped.items()):
        cases = sorted(c for c in answers if c in truth and c in predictions)
        if not cases:
            continue
        model_ok = [predictions[c][0] == truth[c] for c in cases]
        reader_ok = [answers[c].answer == truth[c] for c in cases]
        test = m.mcnemar(model_ok, reader_ok)
        row = {"reader": reader, "arm": arm, "n": len(cases), **test.to_dict()}
        row["table_labels"] = {"rows": ["model correct", "model wrong"]}
        row["table_labels"]["columns"] = ["reader correct", "reader wrong"]
        row["model_accuracy"] = float(np.mean(model_ok))
        row["reader_accuracy"] = float(np.mean(reader_ok))
        for method in ("exact", "chi2", "chi2_cc"):
            row[f"p_{method}"] = m.mcnemar_from_counts(test.b, test.c, method)[1]
        rows.append(row)
    return rows


def _reader_vs_reader(grouped, question: Question, n_boot: int, seed: int) -> list[dict]:
    weights = "quadratic" if question.ordinal else None
    rows = []
    for (ra, arm_a), (rb, arm_b) in combinations(sorted(grouped), 2):
        if arm_a != arm_b:
            continue
        a, b = grouped[(ra, arm_a)], grouped[(rb, arm_b)]
        cases = sorted(set(a) & set(b))
        if not cases:
            continue
        xa = np.asarray([a[c].answer for c in cases])
        xb = np.asarray([b[c].answer for c in cases])
        kappa = partial(m.kappa_from_cm, weights=weights)
        estimate = m.cm_estimate(kappa, xa, xb, question.labels, n_boot, seed=seed)
        rows.append(
            {
                "arm": arm_a,
                "reader_a": ra,
                "reader_b": rb,
                "n": len(cases),
                "weights": weights,
                "kappa": estimate.to_dict(),
                "agreement": float((xa == xb).mean()),
            }
        )
    return rows


def _fleiss(grouped, question: Question, arms: list[str], n_boot: int, seed: int) -> list[dict]:
    rows = []
    for arm in arms:
        readers = {r: ans for (r, a), ans in grouped.items() if a == arm}
        if len(readers) < 2:
            continue
        cases = sorted(set.intersection(*(set(ans) for ans in readers.values())))
        if not cases:
            continue
        counts = np.zeros((len(cases), len(question.labels)))
        for i, case in enumerate(cases):
            for ans in readers.values():
                counts[i, question.labels.index(ans[case].answer)] += 1
        low, high = m.bootstrap_ci(m.fleiss_kappa, counts, n_boot=n_boot, seed=seed)
        estimate = m.Estimate(m.fleiss_kappa(counts), low, high, "bootstrap", len(cases))
        rows.append(
            {"arm": arm, "readers": sorted(readers), "n": len(cases), "kappa": estimate.to_dict()}
        )
    return rows


def _arm_change(grouped, truth: dict[str, str]) -> list[dict]:
    rows = []
    readers = sorted({r for r, _ in grouped})
    for reader in readers:
        una, ass = grouped.get((reader, "unassisted")), grouped.get((reader, "assisted"))
        if not una or not ass:
            continue
        cases = sorted(c for c in set(una) & set(ass) if c in truth)
        if not cases:
            continue
        ok_a = [ass[c].answer == truth[c] for c in cases]
        ok_u = [una[c].answer == truth[c] for c in cases]
        test = m.mcnemar(ok_a, ok_u)
        rows.append(
            {
                "reader": reader,
                "n": len(cases),
                "accuracy_unassisted": float(np.mean(ok_u)),
                "accuracy_assisted": float(np.mean(ok_a)),
                "change": float(np.mean(ok_a) - np.mean(ok_u)),
                "test": test.to_dict(),
                "table_labels": {
                    "rows": ["assisted correct", "assisted wrong"],
                    "columns": ["unassisted correct", "unassisted wrong"],
                },
            }
        )
    return rows


def analyse(store: StudyStore, n_boot: int = 2000, seed: int = 0) -> dict:
    """Compute every number of a study's report.

    Parameters
    ----------
    store : StudyStore
        The study (coordinator side: truth and predictions are read).
    n_boot : int
        Bootstrap resamples for balanced accuracy, F1 and kappa intervals.
    seed : int
        Bootstrap seed, so that a report is reproducible.

    Returns
    -------
    dict
        JSON-ready summary with keys ``study``, ``model``, ``readers``,
        ``reader_vs_model``, ``reader_vs_reader``, ``fleiss``,
        ``assisted_vs_unassisted`` and ``reading_times``.
    """
    question = store.question
    truth, predictions = store.truth(), store.predictions()
    cases = store.cases()
    arms = [a.name for a in store.arms()]
    grouped = _by_reader_arm(store.answers())
    summary = {
        "study": {
            "file": store.path.name,
            "generated_at": utc_now(),
            "question": question.to_dict(),
            "arms": arms,
            "n_cases": len(cases),
            "n_with_truth": len(truth),
            "n_with_model_prediction": len(predictions),
            "missing_slides": missing_slides(cases),
            "readers": sorted(store.readers()),
            "bootstrap": {"n_boot": n_boot, "seed": seed, "level": 0.95},
            "confidence_scale": list(CONFIDENCE_SCALES[question.confidence] or ()) or None,
        }
    }
    scored = sorted(c for c in predictions if c in truth)
    with_prob = all(predictions[c][1] is not None for c in scored)  # else labels, not a mix
    model = _rater_block(
        question,
        [truth[c] for c in scored],
        [predictions[c][0] for c in scored],
        [
            model_score(question, predictions[c][0], predictions[c][1] if with_prob else None)
            for c in scored
        ],
        n_boot,
        seed,
    )
    summary["model"] = model if scored else None
    readers = []
    for (reader, arm), answers in sorted(grouped.items()):
        rated = sorted(c for c in answers if c in truth)
        block = _rater_block(
            question,
            [truth[c] for c in rated],
            [answers[c].answer for c in rated],
            [reader_score(question, answers[c].answer, answers[c].confidence) for c in rated],
            n_boot,
            seed,
        )
        block.update(reader=reader, arm=arm, n_answered=len(answers))
        block["reading_time"] = _reading_time(answers)
        readers.append(block)
    summary["readers"] = readers
    summary["reader_vs_model"] = _reader_vs_model(grouped, truth, predictions)
    summary["reader_vs_reader"] = _reader_vs_reader(grouped, question, n_boot, seed)
    summary["fleiss"] = _fleiss(grouped, question, arms, n_boot, seed)
    summary["assisted_vs_unassisted"] = _arm_change(grouped, truth)
    summary["reading_times"] = [
        {"reader": r, "arm": a, "case_id": c, "seconds": ans.seconds}
        for (r, a), answers in sorted(grouped.items())
        for c, ans in sorted(answers.items())
    ]
    return summary
