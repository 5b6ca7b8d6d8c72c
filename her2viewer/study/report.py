"""Write a study's report folder: summary.json, a CSV per figure and table, PNGs, report.html/pdf.

Every number in the report comes from ``summary.json`` (see
:func:`her2viewer.study.stats.analyse`); every figure has a CSV of what it
draws. The HTML (template ``resources/templates/study_report.html``) embeds its
figures, so it is one self-contained file; ``report.pdf`` holds the same text,
tables and figures (see :mod:`her2viewer.stats.documents`).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
from pathlib import Path

from matplotlib.figure import Figure

from her2viewer.errors import OutputError, StudyError
from her2viewer.jobs import JobContext
from her2viewer.outputs import (
    describe_os_error,
    output_error,
    prepare_output_dir,
    write_text_atomic,
)
from her2viewer.stats.documents import Report, Table, format_value, render_html, write_pdf
from her2viewer.stats.figures import bar_figure, confusion_figure, roc_figure, save_figure
from her2viewer.stats.metrics import EXACT_MCNEMAR_BELOW
from her2viewer.study.definition import check_seconds
from her2viewer.study.mrmc import mrmc_summary, report_figures, report_paragraphs, report_tables
from her2viewer.study.stats import MODEL, analyse
from her2viewer.study.store import StudyStore
from her2viewer.tables import write_csv

METRIC_ORDER = ("accuracy", "balanced_accuracy", "sensitivity", "specificity", "f1", "ppv", "npv")


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "x"


def _raters(summary: dict) -> list[tuple[str, str, dict]]:
    rows = [(MODEL, "", summary["model"])] if summary["model"] else []
    return rows + [(r["reader"], r["arm"], r) for r in summary["readers"]]


def metric_rows(summary: dict) -> list[list]:
    """Flatten a summary's metrics to rows: rater, arm, metric, value, low, high, method, n.

    When a question has both, status metrics (2+/3+ positive) are prefixed ``status_`` to
    tell them from the metrics of the answers themselves (e.g. exact IHC score accuracy).
    """
    rows = []
    for name, arm, block in _raters(summary):
        multiclass = block.get("multiclass", {}).get("metrics", {})
        prefix = "status_" if multiclass else ""
        groups = [(prefix, block.get("binary", {})), ("", multiclass)]
        if "auc" in block:
            groups.append((prefix, {"auc": block["auc"]}))
        for tag, group in groups:
            for metric, est in group.items():
                rows.append(
                    [name, arm, tag + metric, est["value"], est["low"], est["high"]]
                    + [est["method"], est["n"]]
                )
    return rows


#: Columns of ``mcnemar.csv``, one row per reader and arm (see :func:`mcnemar_rows`).
MCNEMAR_HEADER = [
    "reader",
    "arm",
    "n",
    "both_correct",
    "model_only",
    "reader_only",
    "both_wrong",
    "method",
    "p_value",
    "p_exact",
    "p_chi2",
    "p_chi2_cc",
]


def mcnemar_rows(summary: dict) -> list[list]:
    """Flatten a summary's reader-vs-model McNemar tests to rows of :data:`MCNEMAR_HEADER`."""
    return [
        [r["reader"], r["arm"], r["n"], *r["table"][0], *r["table"][1], r["method"]]
        + [r["p_value"], r["p_exact"], r["p_chi2"], r["p_chi2_cc"]]
        for r in summary["reader_vs_model"]
    ]


def _figures(summary: dict, out: Path) -> list[tuple[str, Figure]]:
    """Write PNG + CSV for each figure; return (title, figure) pairs."""
    figures = []
    question_binary = bool(summary["study"]["question"]["positive"])
    points = [
        (f"{r['reader']} ({r['arm']})", r["operating_point"]["fpr"], r["operating_point"]["tpr"])
        for r in summary["readers"]
        if question_binary
        and r.get("operating_point", {}).get("fpr") is not None
        and r["operating_point"]["tpr"] is not None
    ]
    model = summary["model"] or {}
    roc = model.get("roc")
    if roc or points:
        auc = model.get("auc", {}).get("value")
        fpr, tpr = (roc["fpr"], roc["tpr"]) if roc else (None, None)
        figure = roc_figure(fpr, tpr, points, auc)
        save_figure(figure, out / "roc.png")
        rows = [[MODEL, f, t, th] for f, t, th in zip(*roc.values(), strict=True)] if roc else []
        rows += [[name, f, t, ""] for name, f, t in points]
        write_csv(out / "roc.csv", ["series", "fpr", "tpr", "threshold"], rows)
        figures.append(("ROC curve of the model with each reader's operating point", figure))
    for name, arm, block in _raters(summary):
        confusion = block.get("confusion") or block.get("multiclass", {}).get("confusion")
        if not confusion:
            continue
        stem = "confusion_" + _slug(f"{name}_{arm}" if arm else name)
        title = f"{name} ({arm})" if arm else name
        figure = confusion_figure(confusion["labels"], confusion["matrix"], title)
        save_figure(figure, out / f"{stem}.png")
        labels = confusion["labels"]
        write_csv(
            out / f"{stem}.csv",
            ["truth", *labels],
            [[lab, *row] for lab, row in zip(labels, confusion["matrix"], strict=True)],
        )
        figures.append((f"Confusion matrix: {title}", figure))
    times = [r for r in summary["readers"] if r["reading_time"]["n"]]
    if times:
        stats = [r["reading_time"] for r in times]
        figure = bar_figure(
            [f"{r['reader']} ({r['arm']})" for r in times],
            [s["median"] for s in stats],
            [s["min"] for s in stats],
            [s["max"] for s in stats],
            "Reading time per case (median, range)",
        )
        save_figure(figure, out / "reading_time.png")
        rows = [
            [t["reader"], t["arm"], t["case_id"], t["seconds"]] for t in summary["reading_times"]
        ]
        write_csv(out / "reading_time.csv", ["reader", "arm", "case_id", "seconds"], rows)
        figures.append(("Reading time per case", figure))
    return figures + report_figures(summary["mrmc"], out)


def _ci(estimate: dict) -> str:
    value, low, high = (format_value(estimate[k]) for k in ("value", "low", "high"))
    return f"{value} [{low}, {high}]"


def _texts(rows: list[list]) -> list[list[str]]:
    """Return table rows with every cell as report text (see :func:`format_value`)."""
    return [[format_value(v) for v in row] for row in rows]


def _intro(summary: dict) -> list[str]:
    """Return the paragraphs that describe the study and the methods of the report."""
    study = summary["study"]
    boot = study["bootstrap"]
    return [
        f"Question: {study['question']['kind']} ({', '.join(study['question']['labels'])}); "
        f"arms: {', '.join(study['arms'])}; {study['n_cases']} cases, {study['n_with_truth']} "
        f"with truth, {study['n_with_model_prediction']} with a model prediction; readers: "
        f"{', '.join(study['readers']) or 'none'}. Generated {study['generated_at']}.",
        "95% intervals: Clopper-Pearson for proportions, percentile bootstrap "
        f"({boot['n_boot']} resamples, seed {boot['seed']}) for balanced accuracy, F1 and "
        "kappa, DeLong for AUC. A reader or the model is correct on a case when its answer "
        "equals the truth; McNemar tests are exact binomial below "
        f"{EXACT_MCNEMAR_BELOW} discordant cases, chi-square with continuity correction "
        "from there on.",
        *report_paragraphs(summary["mrmc"]),
    ]


def _tables(summary: dict) -> list[Table]:
    """Return the report's tables: metrics, reader vs model, agreement, assisted vs not."""
    metrics = [
        [name, arm, metric, _ci({"value": v, "low": lo, "high": hi}), method, n]
        for name, arm, metric, v, lo, hi, method, n in metric_rows(summary)
    ]
    versus = [
        [r["reader"], r["arm"], r["n"], *r["table"][0], *r["table"][1], r["model_accuracy"]]
        + [r["reader_accuracy"], r["method"], r["p_value"], r["p_exact"], r["p_chi2"]]
        + [r["p_chi2_cc"]]
        for r in summary["reader_vs_model"]
    ]
    agreement = [
        [k["arm"], k["reader_a"], k["reader_b"], k["n"], k["weights"] or "none"]
        + [_ci(k["kappa"]), k["agreement"]]
        for k in summary["reader_vs_reader"]
    ] + [
        [f["arm"], "all: " + ", ".join(f["readers"]), "(Fleiss)", f["n"], "none"]
        + [_ci(f["kappa"]), ""]
        for f in summary["fleiss"]
    ]
    tables = [
        Table(
            "Readers and model against the truth",
            ["rater", "arm", "metric", "value [95% CI]", "CI method", "n"],
            _texts(metrics),
        ),
        Table(
            "Reader vs model on the same cases (two-sided McNemar)",
            ["reader", "arm", "n", "both", "model only", "reader only", "neither"]
            + ["model acc.", "reader acc.", "test", "p", "p exact", "p chi2", "p chi2 cc"],
            _texts(versus),
            "Table cells: both correct, only the model correct, only the reader correct, "
            "both wrong.",
        ),
        Table(
            "Agreement between readers",
            ["arm", "reader A", "reader B", "n", "weights", "kappa [95% CI]", "raw agreement"],
            _texts(agreement),
        ),
    ]
    tables += report_tables(summary["mrmc"])
    paired = [
        [c["reader"], c["n"], c["accuracy_unassisted"], c["accuracy_assisted"], c["change"]]
        + [c["test"]["method"], c["test"]["p_value"]]
        for c in summary["assisted_vs_unassisted"]
    ]
    if paired:
        tables.append(
            Table(
                "Assisted vs unassisted (paired McNemar per reader)",
                ["reader", "n", "acc. unassisted", "acc. assisted", "change", "test", "p"],
                _texts(paired),
            )
        )
    return tables


def _document(summary: dict, figures: list[tuple[str, Figure]]) -> Report:
    """Return the report's content, shared by ``report.html`` and ``report.pdf``."""
    study = summary["study"]
    missing = study["missing_slides"]
    warnings = (
        [f"{len(missing)} case(s) have no slide file: {', '.join(missing)}."] if missing else []
    )
    return Report(
        f"Reader study: {study['file']}", _intro(summary), warnings, _tables(summary), figures
    )


def write_report(
    study_path: Path,
    out_dir: Path,
    n_boot: int = 2000,
    seed: int = 0,
    context: JobContext | None = None,
) -> dict:
    """Analyse a study and write its report folder, complete or not at all.

    The report is written into a hidden temporary folder beside ``out_dir``
    and renamed into place only when every file is written, so a failure (a
    full disk, an error in the analysis) leaves no half report behind.

    Parameters
    ----------
    study_path : Path
        The owner's study file (a reader package is refused).
    out_dir : Path
        Report folder: new, empty, or an earlier report, which is replaced as a whole.
    n_boot, seed : int
        Bootstrap resamples and seed (see :func:`her2viewer.study.stats.analyse`).
    context : JobContext, optional
        Progress per step (statistics, then the files) and cancellation.

    Returns
    -------
    dict
        The summary written to ``summary.json``.
    """
    out = Path(out_dir)
    _check_report_folder(out)
    with StudyStore(study_path, readonly=True) as store:
        store.require_owner("report")
        _check_stored_answers(store)
        prepare_output_dir(out.parent)  # a folder nobody may write to is said before the work
        staging = out.with_name(f".{out.name}.{secrets.token_hex(4)}.tmp")
        try:
            staging.mkdir()  # not mkdtemp: the report keeps the folder permissions of the umask
        except OSError as exc:
            raise output_error(out, exc) from exc
        try:
            if context is not None:
                context.report(0, 2, "statistics and bootstrap intervals")
            summary = analyse(store, n_boot=n_boot, seed=seed)
            summary["mrmc"] = mrmc_summary(store)
            if context is not None:
                context.report(1, 2, "figures, tables, HTML and PDF")
            _write_files(store, summary, staging, out)
            _put_in_place(staging, out)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    if context is not None:
        context.report(2, 2, "done")
    return summary


def _check_stored_answers(store: StudyStore) -> None:
    """Refuse answers no report can use (impossible times stored by older versions)."""
    for a in store.answers():
        where = f"{store.path.name}: the answer of {a.reader!r} to case {a.case_id!r}"
        check_seconds(a.seconds, where)
        store.question.check_confidence(a.confidence, where)


def _check_report_folder(out: Path) -> None:
    """Refuse a report folder that is a file, or a folder holding something else than a report."""
    if out.exists() and not out.is_dir():
        raise StudyError(f"{out} exists and is not a folder.")
    if out.is_dir() and any(out.iterdir()) and not (out / "summary.json").is_file():
        raise StudyError(
            f"{out} is a folder holding other files than a study report; choose a new folder."
        )


def _write_files(store: StudyStore, summary: dict, folder: Path, out: Path) -> None:
    """Write every report file into ``folder``; name ``out`` in the error of a failed write."""
    try:
        store.export_csv(folder / "answers.csv")
        write_csv(
            folder / "metrics.csv",
            ["rater", "arm", "metric", "value", "low", "high", "ci_method", "n"],
            metric_rows(summary),
        )
        write_csv(folder / "mcnemar.csv", MCNEMAR_HEADER, mcnemar_rows(summary))
        document = _document(summary, _figures(summary, folder))
        write_text_atomic(folder / "summary.json", json.dumps(summary, indent=2, allow_nan=False))
        write_text_atomic(folder / "report.html", render_html("study_report.html", document))
        write_pdf(folder / "report.pdf", document)
    except OutputError as exc:
        cause = exc.__cause__
        if not isinstance(cause, OSError):
            raise
        raise OutputError(
            f"cannot write the report {out}: {describe_os_error(cause)}; nothing was written."
        ) from exc


def _put_in_place(staging: Path, out: Path) -> None:
    """Rename a complete report folder to ``out``, replacing an earlier report as a whole."""
    old = out.with_name(f".{out.name}.old.tmp")
    try:
        if out.is_dir():
            shutil.rmtree(old, ignore_errors=True)
            os.rename(out, old)
        os.rename(staging, out)
    except OSError as exc:
        if old.is_dir() and not out.exists():
            os.rename(old, out)
        raise output_error(out, exc) from exc
    shutil.rmtree(old, ignore_errors=True)
