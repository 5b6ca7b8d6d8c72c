"""Write a study's report folder: summary.json, a CSV per figure and table, PNGs, report.html.

Every number in the HTML comes from ``summary.json`` (see
:func:`her2viewer.study.stats.analyse`); every figure has a CSV of what it
draws. The HTML embeds its figures, so it is one self-contained file.
"""

from __future__ import annotations

import base64
import html
import json
import os
import re
import secrets
import shutil
from pathlib import Path

import numpy as np

from her2viewer.errors import OutputError, StudyError
from her2viewer.outputs import (
    describe_os_error,
    output_error,
    prepare_output_dir,
    write_text_atomic,
)
from her2viewer.stats.metrics import EXACT_MCNEMAR_BELOW
from her2viewer.study import plots
from her2viewer.study.definition import check_seconds
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


def _figures(summary: dict, out: Path) -> list[tuple[str, str]]:
    """Write PNG + CSV for each figure; return (title, png name) pairs."""
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
        plots.write_png(plots.roc_figure(fpr, tpr, points, auc), out / "roc.png")
        rows = [[MODEL, f, t, th] for f, t, th in zip(*roc.values(), strict=True)] if roc else []
        rows += [[name, f, t, ""] for name, f, t in points]
        write_csv(out / "roc.csv", ["series", "fpr", "tpr", "threshold"], rows)
        figures.append(("ROC curve of the model with each reader's operating point", "roc.png"))
    for name, arm, block in _raters(summary):
        confusion = block.get("confusion") or block.get("multiclass", {}).get("confusion")
        if not confusion:
            continue
        stem = "confusion_" + _slug(f"{name}_{arm}" if arm else name)
        title = f"{name} ({arm})" if arm else name
        image = plots.confusion_figure(confusion["labels"], confusion["matrix"], title)
        plots.write_png(image, out / f"{stem}.png")
        labels = confusion["labels"]
        write_csv(
            out / f"{stem}.csv",
            ["truth", *labels],
            [[lab, *row] for lab, row in zip(labels, confusion["matrix"], strict=True)],
        )
        figures.append((f"Confusion matrix: {title}", f"{stem}.png"))
    times = [r for r in summary["readers"] if r["reading_time"]["n"]]
    if times:
        names = [f"{r['reader']} ({r['arm']})" for r in times]
        stats = [r["reading_time"] for r in times]
        image = plots.bar_figure(
            names,
            [s["median"] for s in stats],
            [s["min"] for s in stats],
            [s["max"] for s in stats],
            "Reading time per case (median, range)",
        )
        plots.write_png(image, out / "reading_time.png")
        rows = [
            [t["reader"], t["arm"], t["case_id"], t["seconds"]] for t in summary["reading_times"]
        ]
        write_csv(out / "reading_time.csv", ["reader", "arm", "case_id", "seconds"], rows)
        figures.append(("Reading time per case", "reading_time.png"))
    return figures


def _fmt(value) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1e-3 and value != 0 else f"{value:.3f}"
    return html.escape(str(value))


def _ci(estimate: dict) -> str:
    return f"{_fmt(estimate['value'])} [{_fmt(estimate['low'])}, {_fmt(estimate['high'])}]"


def _table(header: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _html(summary: dict, out: Path, figures: list[tuple[str, str]]) -> str:
    study = summary["study"]
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>Reader study report: {html.escape(study['file'])}</title>",
        "<style>body{font-family:sans-serif;margin:2em;max-width:1100px}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #999;"
        "padding:3px 8px;text-align:right}th{background:#eee}img{max-width:640px}</style>",
        "</head><body>",
        f"<h1>Reader study: {html.escape(study['file'])}</h1>",
        f"<p>Question: {html.escape(study['question']['kind'])} "
        f"({', '.join(map(html.escape, study['question']['labels']))}); arms: "
        f"{', '.join(study['arms'])}; {study['n_cases']} cases, {study['n_with_truth']} with "
        f"truth, {study['n_with_model_prediction']} with a model prediction; readers: "
        f"{html.escape(', '.join(study['readers']) or 'none')}. Generated {study['generated_at']}. "
        "95% intervals: Clopper-Pearson for proportions, percentile bootstrap "
        f"({study['bootstrap']['n_boot']} resamples, seed {study['bootstrap']['seed']}) for "
        "balanced accuracy, F1 and kappa, DeLong for AUC. A reader or the model is correct on a "
        "case when its answer equals the truth; McNemar tests are exact binomial below "
        f"{EXACT_MCNEMAR_BELOW} discordant cases, chi-square with continuity correction "
        "from there on.</p>",
    ]
    if study["missing_slides"]:
        parts.append(
            f"<p><b>{len(study['missing_slides'])} case(s) have no slide file</b>: "
            f"{html.escape(', '.join(study['missing_slides']))}.</p>"
        )
    shown = [
        [name, arm, metric, _ci({"value": v, "low": lo, "high": hi}), method, n]
        for name, arm, metric, v, lo, hi, method, n in metric_rows(summary)
    ]
    parts += [
        "<h2>Readers and model against the truth</h2>",
        _table(["rater", "arm", "metric", "value [95% CI]", "CI method", "n"], shown),
    ]
    rows = [
        [
            r["reader"],
            r["arm"],
            r["n"],
            *r["table"][0],
            *r["table"][1],
            r["model_accuracy"],
            r["reader_accuracy"],
            r["method"],
            r["p_value"],
            r["p_exact"],
            r["p_chi2"],
            r["p_chi2_cc"],
        ]
        for r in summary["reader_vs_model"]
    ]
    parts += [
        "<h2>Reader vs model on the same cases (two-sided McNemar)</h2>",
        "<p>Table cells: both correct, only the model correct, only the reader correct, "
        "both wrong.</p>",
        _table(
            [
                "reader",
                "arm",
                "n",
                "both",
                "model only",
                "reader only",
                "neither",
                "model acc.",
                "reader acc.",
                "test",
                "p",
                "p exact",
                "p chi2",
                "p chi2 cc",
            ],
            rows,
        ),
    ]
    rows = [
        [
            k["arm"],
            k["reader_a"],
            k["reader_b"],
            k["n"],
            k["weights"] or "none",
            _ci(k["kappa"]),
            k["agreement"],
        ]
        for k in summary["reader_vs_reader"]
    ]
    rows += [
        [
            f["arm"],
            "all: " + ", ".join(f["readers"]),
            "(Fleiss)",
            f["n"],
            "none",
            _ci(f["kappa"]),
            "",
        ]
        for f in summary["fleiss"]
    ]
    parts += [
        "<h2>Agreement between readers</h2>",
        _table(
            ["arm", "reader A", "reader B", "n", "weights", "kappa [95% CI]", "raw agreement"], rows
        ),
    ]
    rows = [
        [
            c["reader"],
            c["n"],
            c["accuracy_unassisted"],
            c["accuracy_assisted"],
            c["change"],
            c["test"]["method"],
            c["test"]["p_value"],
        ]
        for c in summary["assisted_vs_unassisted"]
    ]
    if rows:
        parts += [
            "<h2>Assisted vs unassisted (paired McNemar per reader)</h2>",
            _table(
                ["reader", "n", "acc. unassisted", "acc. assisted", "change", "test", "p"], rows
            ),
        ]
    parts.append("<h2>Figures</h2>")
    for title, name in figures:
        data = base64.b64encode((out / name).read_bytes()).decode()
        parts.append(
            f"<h3>{html.escape(title)}</h3><img alt='{html.escape(title)}' "
            f"src='data:image/png;base64,{data}'>"
        )
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(study_path: Path, out_dir: Path, n_boot: int = 2000, seed: int = 0) -> dict:
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
        summary = analyse(store, n_boot=n_boot, seed=seed)
        prepare_output_dir(out.parent)
        staging = out.with_name(f".{out.name}.{secrets.token_hex(4)}.tmp")
        try:
            staging.mkdir()  # not mkdtemp: the report keeps the folder permissions of the umask
        except OSError as exc:
            raise output_error(out, exc) from exc
        try:
            _write_files(store, summary, staging, out)
            _put_in_place(staging, out)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
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
        figures = _figures(summary, folder)
        write_text_atomic(folder / "summary.json", json.dumps(summary, indent=2, allow_nan=False))
        write_text_atomic(folder / "report.html", _html(summary, folder, figures))
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
