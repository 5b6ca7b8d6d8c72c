"""A reader study's answers as an MRMC data set, and its MRMC analysis for the report.

The study's arms are the modalities (e.g. unassisted and assisted) and each answer's
rating is :func:`her2viewer.study.stats.reader_score` (the position on an ordinal scale,
or the confidence of a binary answer); the truth is the question's positive status.

The model is compared with the readers as a modality of its own whose ratings are the
same for every reader ("model as a reader"): Obuchowski-Rockette's random-readers test
of that design equals Hillis' single-modality analysis of the reader-minus-model
differences, so it is valid although the model does not vary between readers. A study
with one arm is analysed that way; a study with two arms compares the arms, and each
arm with the model.
"""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure

from her2viewer.stats import mrmc as stats_mrmc
from her2viewer.stats.documents import Table
from her2viewer.stats.figures import mrmc_figure, save_figure
from her2viewer.stats.mrmc import MrmcError, Ratings
from her2viewer.study.stats import MODEL, model_score, reader_score
from her2viewer.study.store import StudyStore
from her2viewer.tables import write_csv

#: OR-DBM MRMC's names of the Obuchowski-Rockette quantities, as the report prints them.
COMPONENT_LABELS = {
    "ms_t": "MS(T)",
    "ms_r": "MS(R)",
    "ms_tr": "MS(T*R)",
    "var_r": "Var(R)",
    "var_tr": "Var(T*R)",
    "cov1": "Cov1 (same reader, other modality)",
    "cov2": "Cov2 (other reader, same modality)",
    "cov3": "Cov3 (other reader, other modality)",
    "var_error": "Var(Error)",
}
#: The planning line of the report: AUC difference to detect, power, reader counts.
PLAN_EFFECT, PLAN_POWER, PLAN_READERS = 0.05, 0.8, (4, 6, 8, 10, 15)


def study_ratings(
    store: StudyStore, need_scores: bool = True, versus_model: str | None = None
) -> Ratings:
    """Return the study's current answers on the cases with a truth as an MRMC data set.

    Parameters
    ----------
    store : StudyStore
        The owner's study file.
    need_scores : bool
        Refuse an answer without a rating (the AUC needs one); otherwise such an answer
        is rated 1 (positive call) or 0.
    versus_model : str, optional
        An arm: its answers and the model as the second modality. Without it, every arm
        with answers is a modality, and a study with one such arm is compared with the
        model.

    Raises
    ------
    MrmcError
        One sentence naming the file: a question without a positive answer, an answer
        without a rating, a single arm without a model prediction for every case, or a
        design that is not fully crossed.
    """
    question, name = store.question, store.path.name
    if not question.binary:
        raise MrmcError(
            f"{name}: an MRMC analysis needs a question with positive answers (status or "
            "ihc_score), not a custom question without --positive."
        )
    truth = {c: question.is_positive(label) for c, label in store.truth().items()}
    table, calls = {}, {}
    for a in store.answers():
        if a.case_id not in truth or versus_model not in (None, a.arm):
            continue
        key = (a.arm, a.reader, a.case_id)
        score = reader_score(question, a.answer, a.confidence)
        calls[key] = question.is_positive(a.answer)
        if score is None and need_scores:
            raise MrmcError(
                f"{name}: the answer of {a.reader!r} to case {a.case_id!r} ({a.arm}) has no "
                "confidence rating, which the AUC needs; use --fom sensitivity, specificity "
                "or accuracy."
            )
        table[key] = float(calls[key]) if score is None else score
    if len({arm for arm, _, _ in table}) == 1:
        _add_model(store, table, calls, truth)
    return Ratings.from_table(table, truth, name, calls)


def _add_model(store: StudyStore, table: dict, calls: dict, truth: dict) -> None:
    """Add the model's ratings as a modality, the same for each reader of the one arm."""
    question, predictions = store.question, store.predictions()
    (arm,) = {a for a, _, _ in table}
    cases = sorted({c for _, _, c in table})
    lacking = [c for c in cases if c not in predictions]
    if lacking:
        raise MrmcError(
            f"{store.path.name}: only the {arm} arm has answers, so the readers are compared "
            f"with the model, which has no prediction for case {lacking[0]!r}."
        )
    with_prob = all(predictions[c][1] is not None for c in cases)
    for _, reader, case in list(table):
        label, prob = predictions[case]
        table[(MODEL, reader, case)] = model_score(question, label, prob if with_prob else None)
        calls[(MODEL, reader, case)] = question.is_positive(label)


def study_mrmc(
    store: StudyStore,
    fom: str = "auc",
    covariance: str = "jackknife",
    threshold: float | None = None,
) -> dict:
    """MRMC analysis of a study, its averaged ROC curves and a sample-size plan.

    Returns
    -------
    dict
        :func:`her2viewer.stats.mrmc.mrmc`'s result plus ``averaged_roc``,
        ``readers_vs_model`` (with two or more arms: each arm against the model, the
        random-readers difference, or None without a model prediction for every case)
        and ``sample_size`` (readers x cases for :data:`PLAN_POWER` power to detect a FOM
        difference of :data:`PLAN_EFFECT`).
    """
    data = study_ratings(store, need_scores=fom == "auc")
    result = stats_mrmc.mrmc(data, fom, covariance, threshold)
    result["averaged_roc"] = stats_mrmc.averaged_roc(data)
    result["readers_vs_model"] = None
    predicted = store.predictions()
    if MODEL not in data.modalities and all(c in predicted for c in data.cases):
        result["readers_vs_model"] = [
            stats_mrmc.mrmc(study_ratings(store, fom == "auc", arm), fom, covariance, threshold)[
                "rrrc"
            ]["differences"][0]
            for arm in data.modalities
        ]
    result["sample_size"] = {
        "effect": PLAN_EFFECT,
        "power": PLAN_POWER,
        "alpha": 0.05,
        "plans": stats_mrmc.sample_size(
            result["components"], len(data.cases), PLAN_EFFECT, PLAN_READERS, PLAN_POWER
        ),
    }
    return result


def mrmc_summary(store: StudyStore) -> dict:
    """Return :func:`study_mrmc` of the AUC, or ``{"unavailable": reason}`` (for the report)."""
    try:
        return study_mrmc(store)
    except MrmcError as exc:
        return {"unavailable": str(exc)}


def _fmt(value, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _ci(row: dict, key: str) -> str:
    return f"{_fmt(row[key])} [{_fmt(row['ci_low'])}, {_fmt(row['ci_high'])}]"


def _test_rows(block: dict) -> list[list[str]]:
    rows = []
    names = {
        "rrrc": "random readers, random cases",
        "frrc": "fixed readers, random cases",
        "rrfc": "random readers, fixed cases",
    }
    for key, title in names.items():
        test = block[key]
        statistic = f"chi2 = {_fmt(test['chi2'])}" if key == "frrc" else f"F = {_fmt(test['f'])}"
        df = str(test["df"]) if key == "frrc" else f"{test['df1']}, {_fmt(test['df2'], 2)}"
        rows.append([title, "all modalities", "", "", statistic, df, _fmt(test["p"], 4)])
        for d in test["differences"]:
            rows.append(
                [title, " - ".join(d["modalities"]), _ci(d, "difference"), _fmt(d["stderr"], 4)]
                + ["", "normal" if d["df"] is None else _fmt(d["df"], 2), _fmt(d["p"], 4)]
            )
    dbm = block["dbm"]
    rows.append(["DBM (cross-check)", "all modalities", "", "", f"F = {_fmt(dbm['f'])}"]
                + [f"{dbm['df1']}, {_fmt(dbm['df2'], 2)}", _fmt(dbm["p"], 4)])  # fmt: skip
    for d in block["readers_vs_model"] or []:
        rows.append(
            ["arm vs model (RRRC)", " - ".join(d["modalities"]), _ci(d, "difference")]
            + [_fmt(d["stderr"], 4), "", _fmt(d["df"], 2), _fmt(d["p"], 4)]
        )
    return rows


def _fom_name(block: dict) -> str:
    fom = block["design"]["fom"]
    return "AUC" if fom == "auc" else fom


def report_tables(block: dict) -> list[Table]:
    """Return the report's MRMC tables (none when the study allows no MRMC analysis)."""
    if "unavailable" in block:
        return []
    fom, modalities = _fom_name(block), block["design"]["modalities"]
    per_reader = [[r, *(_fmt(v[m]) for m in modalities)] for r, v in block["fom"].items()]
    per_reader.append(["mean", *(_fmt(block["modality_means"][m]) for m in modalities)])
    means = [
        [title, s["modality"], _ci(s, "fom"), "normal" if s["df"] is None else _fmt(s["df"], 2)]
        for title, key in (("RRRC", "rrrc"), ("FRRC", "frrc"), ("RRFC", "rrfc"))
        for s in block[key]["modalities"]
    ]
    comp = block["components"]
    return [
        Table(f"MRMC: {fom} per reader and modality", ["reader", *modalities], per_reader),
        Table(
            "MRMC: Obuchowski-Rockette tests with Hillis (2007) degrees of freedom",
            ["analysis", "comparison", "difference [95% CI]", "StdErr", "test", "df", "p"],
            _test_rows(block),
        ),
        Table(
            f"MRMC: mean {fom} per modality",
            ["analysis", "modality", f"{fom} [95% CI]", "df"],
            means,
        ),
        Table(
            "MRMC: Obuchowski-Rockette mean squares, variance components and correlations",
            ["quantity", "value"],
            [[label, f"{comp[n]:.8f}"] for n, label in COMPONENT_LABELS.items()]
            + [[f"r{i} = Cov{i} / Var(Error)", _fmt(comp[f"corr{i}"])] for i in (1, 2, 3)],
        ),
    ]


def report_paragraphs(block: dict) -> list[str]:
    """Return the methods of the MRMC analysis and the sample-size line."""
    if "unavailable" in block:
        return [f"No MRMC analysis: {block['unavailable']}"]
    design, plan = block["design"], block["sample_size"]
    sizes = ", ".join(
        f"{p['readers']} readers {p['cases'] or 'more than 100000'} cases" for p in plan["plans"]
    )
    return [
        f"MRMC analysis ({len(design['readers'])} readers x {len(design['modalities'])} "
        f"modalities x {design['cases']} cases, {design['positive']} positive): empirical "
        f"(Wilcoxon) {_fom_name(block)} of each reader's ratings, {design['covariance']} "
        "covariance over cases, Obuchowski-Rockette analysis (Obuchowski and Rockette 1995) "
        "with Hillis (2007) denominator degrees of freedom for random readers and cases, "
        "single-modality intervals of Hillis et al. (2008), and DBM on jackknife "
        "pseudovalues as a cross-check. The model, where it is a modality, rates every "
        "case alike for each reader.",
        f"Sample size (Hillis et al. 2011, from these variance components): to detect a "
        f"difference of {plan['effect']} in {_fom_name(block)} with {plan['power']:.0%} power "
        f"at alpha {plan['alpha']}: {sizes}.",
    ]


def report_figures(block: dict, out: Path) -> list[tuple[str, Figure]]:
    """Write ``mrmc.png`` with the CSVs of what it draws; return its (title, figure)."""
    if "unavailable" in block:
        return []
    modalities = block["design"]["modalities"]
    curves = {m: (c["fpr"], c["tpr"]) for m, c in block["averaged_roc"].items()}
    readers = {m: [v[m] for v in block["fom"].values()] for m in modalities}
    intervals = {
        s["modality"]: (s["fom"], s["ci_low"], s["ci_high"]) for s in block["rrrc"]["modalities"]
    }
    figure = mrmc_figure(curves, readers, intervals, _fom_name(block))
    save_figure(figure, out / "mrmc.png")
    rows = [[r, m, v[m]] for r, v in block["fom"].items() for m in modalities]
    write_csv(out / "mrmc_fom.csv", ["reader", "modality", block["design"]["fom"]], rows)
    rows = [[m, *p] for m, (f, t) in curves.items() for p in zip(f, t, strict=True)]
    write_csv(out / "mrmc_roc.csv", ["modality", "fpr", "tpr"], rows)
    return [("MRMC: averaged ROC curves and reader figures of merit per modality", figure)]
