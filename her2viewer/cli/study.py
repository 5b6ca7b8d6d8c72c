"""Verbs of the study room: ``her2viewer study <create|import|export|status|report|...>``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from her2viewer.argtypes import bounded
from her2viewer.cli.options import add_json_option, add_output_option, add_progress_options
from her2viewer.cli.progress import progress_reporter
from her2viewer.errors import StudyError
from her2viewer.stats.metrics import mcnemar_splits
from her2viewer.study.access import OWNER_ENV, READER_ENV, read_secret, require_secret
from her2viewer.study.definition import (
    CONFIDENCE_SCALES,
    ReadingRules,
    load_cases,
    load_predictions,
    load_truth,
    make_question,
    missing_slides,
)
from her2viewer.study.store import StudyStore, is_study_file


def _names(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def register(subparsers) -> None:
    """Add the ``study`` verb and its sub-verbs."""
    study = subparsers.add_parser("study", help="reader studies: create, read, import, report")
    verbs = study.add_subparsers(dest="study_verb", metavar="STUDY_VERB")
    verbs.required = True

    create = verbs.add_parser("create", help="create a study file from CSVs")
    create.add_argument("study", help="new study file (.h2study)")
    create.add_argument("--cases", required=True, help="CSV: case_id, he_path[, ihc_path]")
    create.add_argument("--question", required=True, choices=("status", "ihc_score", "custom"))
    create.add_argument("--labels", type=_names, help="answers of a custom question, a,b,c")
    create.add_argument("--positive", help="positive label of a custom question")
    create.add_argument("--confidence", default="none", choices=tuple(CONFIDENCE_SCALES))
    create.add_argument("--truth", help="CSV: case_id, truth")
    model = create.add_mutually_exclusive_group()
    model.add_argument("--model-predictions", help="CSV: case_id, prediction[, probability]")
    model.add_argument("--model", help="CLAM bundle run on every H&E slide (predictions + layer)")
    create.add_argument(
        "--arms", type=_names, default=["unassisted"], help="e.g. unassisted,assisted"
    )
    create.add_argument("--readers", type=_names, default=[], help="enrolled readers, a,b")
    create.add_argument(
        "--seed", type=bounded(int, 0), help="randomisation seed (random when omitted)"
    )
    create.add_argument("--washout-until", help="ISO date on which the second arm opens")
    _add_reading_options(create)
    add_progress_options(create)
    create.set_defaults(func=run_create)

    imp = verbs.add_parser("import", help="import answers collected elsewhere")
    imp.add_argument("study")
    imp.add_argument(
        "answers",
        help="CSV: reader, case_id, answer[, confidence, arm, seconds], or a reader package "
        "(.h2study) a reader has answered in",
    )
    imp.set_defaults(func=run_import)

    exp = verbs.add_parser(
        "export", help="write every answer revision to a CSV (the owner's study file only)"
    )
    exp.add_argument("study")
    add_output_option(exp, "file to write", required=True, deprecated=("--output",))
    exp.add_argument(
        "--format",
        choices=("revisions", "long", "marks"),
        default="revisions",
        help="revisions: every answer revision (CSV, default); long: one row per reader, "
        "modality and case with truth and rating (CSV, see the researcher's guide); marks: the "
        "readers' marks (QuPath GeoJSON)",
    )
    exp.set_defaults(func=run_export)

    package = verbs.add_parser(
        "export-for-reader",
        help="write the blinded copy of a study to give to readers",
        description="Write a reader package: a copy of the study without the truth table and "
        "without other readers' answers (and, unless --with-model, without the model's "
        "predictions and score maps). Give readers the package, never the study file itself: "
        "'study report', 'export' and 'results' refuse a package, and the owner brings the "
        "answers back with 'study import STUDY PACKAGE'.",
    )
    package.add_argument("study", help="the owner's study file")
    add_output_option(
        package, "package to write (.h2study)", required=True, deprecated=("--output",)
    )
    package.add_argument(
        "--with-model",
        action="store_true",
        help="keep the model's outputs, which an assisted arm shows (give this package only "
        "once the unassisted reading is done)",
    )
    package.set_defaults(func=run_export_for_reader)

    status = verbs.add_parser("status", help="progress per reader, missing slides, file health")
    status.add_argument("study")
    add_json_option(status, "the progress")
    status.set_defaults(func=run_status)

    report = verbs.add_parser(
        "report", help="statistics, figures and an HTML summary (the owner's study file only)"
    )
    report.add_argument("study")
    add_output_option(report, "report folder", required=True, deprecated=("--output",))
    report.add_argument(
        "--bootstrap", type=bounded(int, 0, 100_000), default=2000, help="resamples (default 2000)"
    )
    report.add_argument(
        "--seed", type=bounded(int, 0), default=0, help="bootstrap seed (default 0)"
    )
    add_progress_options(report)
    report.set_defaults(func=run_report)

    read = verbs.add_parser("read", help="open the blinded reading window")
    read.add_argument("study")
    read.add_argument("--reader", required=True, help="your name as enrolled")
    read.add_argument("--arm", help="arm to read (default: the first)")
    read.set_defaults(func=run_read)
    _register_access(verbs)

    results = verbs.add_parser("results", help="show a report's figures and tables (coordinator)")
    results.add_argument("report", help="report folder or its summary.json")
    results.set_defaults(func=run_results)

    rng = verbs.add_parser(
        "mcnemar-range", help="McNemar p-values of every table consistent with two accuracies"
    )
    count = bounded(int, 0, 100_000)
    rng.add_argument("--cases", type=count, required=True, help="cases both raters read")
    rng.add_argument("--correct-a", type=count, required=True, help="cases rater A got right")
    rng.add_argument("--correct-b", type=count, required=True, help="cases rater B got right")
    rng.set_defaults(func=run_mcnemar_range)
    _register_mrmc(verbs)


def run_create(args) -> int:
    """Create a study file and say what it holds."""
    question = make_question(args.question, args.labels, args.positive, args.confidence)
    secret = read_secret(OWNER_ENV, f"new owner secret of {args.study}", confirm=True)
    cases = load_cases(Path(args.cases))
    ids = {c.case_id for c in cases}
    truth = load_truth(Path(args.truth), question, ids) if args.truth else None
    predictions, overlays = None, None
    if args.model_predictions:
        predictions = load_predictions(Path(args.model_predictions), question, ids)
    elif args.model:
        predictions, overlays = _run_model(cases, question, Path(args.model), args)
    with StudyStore.create(
        Path(args.study),
        question,
        cases,
        truth,
        predictions,
        args.arms,
        args.readers,
        args.seed,
        args.washout_until,
        overlays,
        secret,
        ReadingRules(
            idle_limit_s=args.idle_limit,
            ask_her2_score=args.ask_her2_score,
            ask_membrane_percent=args.ask_membrane_percent,
        ),
        _register(cases, args),
    ) as store:
        arms = ", ".join(a.name for a in store.arms())
        print(
            f"created {args.study}: {len(cases)} cases, question {question.kind}, arms {arms}, "
            f"truth for {len(truth or {})}, model predictions for {len(predictions or {})}, "
            f"seed {store.seed}"
        )
    if secret is None:
        print(
            f"warning: no owner secret ({OWNER_ENV} unset, no terminal): anyone who can run "
            "her2viewer can unblind this study; set one with 'study protect'"
        )
    missing = missing_slides(cases)
    if missing:
        print(
            f"warning: {len(missing)} case(s) have no slide file and can only be analysed from "
            f"imported answers: {', '.join(missing[:10])}{' ...' if len(missing) > 10 else ''}"
        )
    return 0


def _run_model(cases, question, bundle: Path, args):
    from her2viewer.study.model import predict_cases

    if not bundle.exists():
        raise StudyError(f"{bundle}: no such model bundle.")
    with progress_reporter(args, "study create (model)", "cases") as progress:
        predictions, overlays, skipped = predict_cases(cases, question, bundle, progress=progress)
    if skipped:
        print(f"model: {len(skipped)} case(s) without a slide have no model prediction")
    return predictions, overlays


def run_import(args) -> int:
    """Import an answers CSV or a reader package."""
    answers = Path(args.answers)
    with owner_store(Path(args.study), "import") as store:
        if is_study_file(answers):
            count = store.import_package(answers)
        else:
            count = store.import_csv(answers)
    print(f"imported {count} answers into {args.study}")
    return 0


def run_export(args) -> int:
    """Export every answer revision, the long table or the readers' marks."""
    from her2viewer.study.exports import write_long_csv, write_marks

    writers = {"revisions": StudyStore.export_csv, "long": write_long_csv, "marks": write_marks}
    with owner_store(Path(args.study), "export") as store:
        store.require_owner("export")
        count = writers[args.format](store, Path(args.out))
    noun = "marks" if args.format == "marks" else "answer rows"
    print(f"wrote {count} {noun} to {args.out}")
    return 0


def run_export_for_reader(args) -> int:
    """Write a reader package (no truth, no other readers' answers)."""
    with owner_store(Path(args.study), "export-for-reader") as store:
        store.export_for_reader(Path(args.out), args.with_model)
    model = "with" if args.with_model else "without"
    print(f"wrote reader package {args.out} ({model} the model's outputs, without the truth)")
    return 0


def study_status(store: StudyStore) -> dict:
    """Return progress per reader and arm, missing slides and the file's integrity verdict."""
    n_cases = len(store.cases())
    progress = {}
    for answer in store.answers():
        key = f"{answer.reader}/{answer.arm}"
        progress[key] = progress.get(key, 0) + 1
    return {
        "cases": n_cases,
        "arms": [a.__dict__ for a in store.arms()],
        "readers": sorted(store.readers()),
        "answered": {k: {"answered": v, "of": n_cases} for k, v in sorted(progress.items())},
        "missing_slides": missing_slides(store.cases()),
        "integrity": store.integrity_check(),
        "access": {"protected": store.protected, "closed_at": store.closed_at},
    }


def _access_text(access: dict) -> str:
    text = "protected by the owner secret"
    if not access["protected"]:
        text = "UNPROTECTED (no owner secret; set one with 'study protect')"
    return text + (f"; closed since {access['closed_at']}" if access["closed_at"] else "")


def run_status(args) -> int:
    """Print a study's progress."""
    with owner_store(Path(args.study), "status") as store:
        status = study_status(store)
    if args.json:
        print(json.dumps(status, indent=2))
        return 0
    print(f"{status['cases']} cases; readers: {', '.join(status['readers']) or 'none yet'}")
    for key, value in status["answered"].items():
        print(f"  {key}: {value['answered']}/{value['of']}")
    if status["missing_slides"]:
        print(f"missing slides: {', '.join(status['missing_slides'])}")
    print(f"integrity: {status['integrity']}")
    print(f"access: {_access_text(status['access'])}")
    return 0


def run_report(args) -> int:
    """Write the report folder."""
    from her2viewer.study.report import write_report

    owner_store(Path(args.study), "report").close()  # checks the secret, logs the opening
    with progress_reporter(args, "study report", "steps") as progress:
        summary = write_report(
            Path(args.study), Path(args.out), args.bootstrap, args.seed, progress.context()
        )
    print(
        f"wrote report for {summary['study']['n_cases']} cases and "
        f"{len(summary['readers'])} reader-arm(s) to {args.out}/report.html"
    )
    return 0


def run_read(args) -> int:
    """Open the reading window (needs a display)."""
    try:
        from her2viewer.gui.study.window import run_reading_app
    except ImportError as exc:
        raise StudyError(f"the reading window needs PySide6 ({exc}).") from exc
    with StudyStore(Path(args.study)) as store:
        needed = store.pin_needed(args.reader)
        new = args.reader.strip() not in store.readers()  # choosing a PIN: asked twice
    pin = read_secret(READER_ENV, f"PIN of reader {args.reader}", new) if needed else None
    return run_reading_app(Path(args.study), args.reader, args.arm, pin)


def run_results(args) -> int:
    """Open the results window (needs a display)."""
    try:
        from her2viewer.gui.study.results import run_results_app
    except ImportError as exc:
        raise StudyError(f"the results window needs PySide6 and pyqtgraph ({exc}).") from exc
    return run_results_app(Path(args.report))


def run_mcnemar_range(args) -> int:
    """Print every 2x2 split consistent with the counts and its McNemar p-values as JSON."""
    try:
        rows = mcnemar_splits(args.cases, args.correct_a, args.correct_b)
    except ValueError as exc:
        raise StudyError(str(exc)) from exc
    summary = {
        method: [min(r[f"p_{method}"] for r in rows), max(r[f"p_{method}"] for r in rows)]
        for method in ("exact", "chi2", "chi2_cc")
    }
    print(json.dumps({"splits": rows, "p_range": summary}, indent=2))
    return 0


def _register_mrmc(verbs) -> None:
    """Add ``study mrmc`` and ``study sample-size`` (multi-reader multi-case analysis)."""
    from her2viewer.stats.mrmc import COVARIANCES, FOMS

    for name, text in (
        ("mrmc", "multi-reader multi-case analysis (Obuchowski-Rockette, Hillis df; DBM)"),
        ("sample-size", "readers x cases a future study needs, from a pilot's MRMC variance"),
    ):
        verb = verbs.add_parser(name, help=text, description=text)
        verb.add_argument(
            "ratings",
            help="study file (.h2study, the owner's) or a long CSV: reader, modality, case, "
            "truth (0/1), rating",
        )
        verb.add_argument("--fom", choices=FOMS, default="auc", help="figure of merit")
        verb.add_argument("--covariance", choices=COVARIANCES, default="jackknife")
        verb.add_argument(
            "--threshold", type=bounded(float), help="a rating at or above it is a positive call"
        )
        add_json_option(verb, f"the {name} result")
    mrmc, plan = verbs.choices["mrmc"], verbs.choices["sample-size"]
    mrmc.add_argument("--imrmc", help="also write the ratings as iMRMC input (.imrmc)")
    mrmc.add_argument(
        "--long-csv",
        help="also write the ratings as a long CSV (RJafroc, MRMCaov): the columns of "
        "'study export --format long'",
    )
    mrmc.set_defaults(func=run_mrmc)
    plan.add_argument(
        "--effect",
        type=bounded(float, 0, 1, low_open=True, high_open=True),
        required=True,
        help="difference of the modalities' FOM to detect, e.g. 0.05",
    )
    probability = bounded(float, 0, 1, low_open=True, high_open=True)
    plan.add_argument("--power", type=probability, default=0.8, help="target (default 0.8)")
    plan.add_argument("--alpha", type=probability, default=0.05, help="level (default 0.05)")
    plan.add_argument(
        "--readers", type=_counts, default=[3, 4, 5, 6, 8, 10, 15, 20], help="e.g. 4,6,8"
    )
    plan.set_defaults(func=run_sample_size)


def _counts(text: str) -> list[int]:
    counts = [int(x) if x.isdigit() else 0 for x in _names(text)]
    if not counts or not 2 <= min(counts) <= max(counts) <= 1000:
        raise argparse.ArgumentTypeError(
            f"'{text}' is not a list of reader counts 2-1000, e.g. 4,6,8"
        )
    return counts


def _mrmc_result(args, exports: bool = False) -> dict:
    """Run the MRMC analysis of a study file or a ratings CSV and return it.

    With ``exports``, the ``--imrmc`` and ``--long-csv`` files asked for are written from
    the analysed ratings (a study's long table with its answers, through
    :func:`her2viewer.study.exports.write_long_csv`, like ``study export --format long``).
    """
    from her2viewer.stats.mrmc import mrmc, read_ratings

    path = Path(args.ratings)
    if not is_study_file(path):
        data = read_ratings(path)
        result = mrmc(data, args.fom, args.covariance, args.threshold)
        if exports:
            _write_mrmc_exports(args, None, data)
        return result
    from her2viewer.study.mrmc import study_mrmc, study_ratings

    with owner_store(path, args.study_verb) as store:
        store.require_owner(args.study_verb)
        result = study_mrmc(store, args.fom, args.covariance, args.threshold)
        if exports:
            _write_mrmc_exports(args, store, study_ratings(store, args.fom == "auc"))
        return result


def _write_mrmc_exports(args, store: StudyStore | None, data) -> None:
    """Write ``--imrmc`` and ``--long-csv`` (when asked for) of the ratings ``data``."""
    from her2viewer.stats.mrmc import write_imrmc
    from her2viewer.study.exports import write_long_csv

    if args.imrmc:
        write_imrmc(data, Path(args.imrmc))
    if args.long_csv:
        write_long_csv(store, Path(args.long_csv), data)


def run_mrmc(args) -> int:
    """Print the MRMC analysis (JSON with --json) and write the exports asked for."""
    result = _mrmc_result(args, exports=True)
    if args.json:
        print(json.dumps(mrmc_json(result), indent=2))
        return 0
    for line in mrmc_lines(result):
        print(line)
    return 0


def mrmc_json(result: dict) -> dict:
    """Return the MRMC result with the headline fields: ``auc``, ``rrrc``, ``frrc`` flattened.

    ``rrrc`` and ``frrc`` carry the global test and, for the first pair of modalities, its
    ``difference``, ``stderr``, ``ci_low`` and ``ci_high``; every pair stays in
    ``differences``.
    """
    out = dict(result)
    if result["design"]["fom"] == "auc":
        out["auc"] = result["fom"]
    for name in ("rrrc", "frrc", "rrfc"):
        first = result[name]["differences"][0]
        out[name] = {**result[name], **{k: first[k] for k in _HEADLINE}}
    return out


_HEADLINE = ("difference", "stderr", "ci_low", "ci_high")


def _num(value: float | None, digits: int) -> str:
    return "undefined" if value is None else f"{value:.{digits}f}"


def mrmc_lines(result: dict) -> list[str]:
    """Return the MRMC result as the lines the verb prints."""
    design, comp = result["design"], result["components"]
    lines = [
        f"{len(design['readers'])} readers x {len(design['modalities'])} modalities x "
        f"{design['cases']} cases ({design['positive']} positive); FOM {design['fom']}, "
        f"{design['covariance']} covariance",
    ]
    lines += [f"  {m}: mean {v:.4f}" for m, v in result["modality_means"].items()]
    rrrc, frrc = result["rrrc"], result["frrc"]
    lines.append(
        f"random readers, random cases: F = {_num(rrrc['f'], 3)}, df {rrrc['df1']} and "
        f"{_num(rrrc['df2'], 2)}, p = {_num(rrrc['p'], 4)}"
    )
    lines.append(
        f"fixed readers, random cases: chi2 = {_num(frrc['chi2'], 3)}, p = {_num(frrc['p'], 4)}"
    )
    for d in rrrc["differences"]:
        a, b = d["modalities"]
        lines.append(
            f"  {a} - {b}: {d['difference']:.4f} (StdErr {d['stderr']:.4f}, 95% CI "
            f"{d['ci_low']:.4f} to {d['ci_high']:.4f})"
        )
    lines.append(
        "variance components: "
        + ", ".join(f"{k} {comp[k]:.6f}" for k in ("var_r", "var_tr", "cov1", "cov2", "cov3"))
        + f", var_error {comp['var_error']:.6f}"
    )
    return lines


def run_sample_size(args) -> int:
    """Print readers x cases for the target power, from the pilot's variance components."""
    from her2viewer.stats.mrmc import sample_size

    result = _mrmc_result(args)
    plans = sample_size(
        result["components"],
        result["design"]["cases"],
        args.effect,
        args.readers,
        args.power,
        args.alpha,
    )
    if args.json:
        print(json.dumps({"effect": args.effect, "power": args.power, "alpha": args.alpha,
                          "pilot": result["design"], "plans": plans}, indent=2))  # fmt: skip
        return 0
    print(
        f"cases for {args.power:.0%} power to detect a difference of {args.effect} in "
        f"{result['design']['fom']} (alpha {args.alpha}, random readers and cases):"
    )
    for row in plans:
        cases = "more than 100000" if row["cases"] is None else row["cases"]
        print(f"  {row['readers']} readers: {cases} cases")
    return 0


def owner_store(path: Path, action: str) -> StudyStore:
    """Open a study as its owner for ``action`` (the owner secret when it has one; logged)."""
    store = StudyStore(path)
    try:
        secret = None
        if store.protected:
            secret = read_secret(OWNER_ENV, f"owner secret of {path.name}")
        store.unlock(secret, action)
    except BaseException:
        store.close()
        raise
    return store


def _add_reading_options(create) -> None:
    """Reading rules, registration and the owner secret of ``study create``."""
    create.add_argument(
        "--idle-limit",
        type=bounded(float, 0, 86400, low_open=True),
        help="seconds without mouse or key input after which reading time stops counting",
    )
    create.add_argument(
        "--ask-her2-score", action="store_true", help="readers give a HER2 score with each call"
    )
    create.add_argument(
        "--ask-membrane-percent",
        action="store_true",
        help="readers estimate the percentage of complete membrane staining",
    )
    create.add_argument(
        "--no-registration",
        action="store_true",
        help="do not register each case's IHC onto its H&E (panes then follow relatively)",
    )
    create.epilog = (
        f"The owner secret is read from {OWNER_ENV} or asked on the terminal (never an "
        "argument: it would stay in the shell history); without either the study is created "
        "unprotected, with a warning."
    )


def _register(cases, args) -> dict:
    """Register each case's slides (unless --no-registration); say which pairs failed."""
    paired = [c for c in cases if c.case_id not in missing_slides([c]) and c.ihc_path]
    if args.no_registration or not paired:
        return {}
    from her2viewer.study.registration import register_cases

    with progress_reporter(args, "study create (registration)", "cases") as progress:
        found, failures = register_cases(paired, progress=progress)
    for case_id, reason in failures.items():
        print(f"warning: case {case_id} is read with relative sync: {reason}")
    return found


def _register_access(verbs) -> None:
    """Add the owner's verbs: protect, add-reader, close, access-log."""
    protect = verbs.add_parser(
        "protect",
        help="give an unprotected study an owner secret",
        description=f"Set the owner secret (from {OWNER_ENV} or asked twice on the terminal) "
        "of a study created without one; from then on unblinding needs it.",
    )
    protect.add_argument("study")
    protect.set_defaults(func=run_protect)
    add = verbs.add_parser(
        "add-reader",
        help="enrol a reader with a PIN, or reset a reader's PIN (owner)",
        description=f"The reader's PIN or passphrase is read from {READER_ENV} or asked twice "
        "on the terminal (let the reader type it); the owner secret as for every owner verb.",
    )
    add.add_argument("study")
    add.add_argument("reader", help="the reader's name")
    add.set_defaults(func=run_add_reader)
    close = verbs.add_parser("close", help="close a study: no more answers are taken (owner)")
    close.add_argument("study")
    close.set_defaults(func=run_close)
    log = verbs.add_parser("access-log", help="who opened the study, when, for what (owner)")
    log.add_argument("study")
    add_json_option(log, "the access log")
    log.set_defaults(func=run_access_log)


def run_protect(args) -> int:
    """Set the owner secret of an unprotected study."""
    with owner_store(Path(args.study), "protect") as store:
        if store.protected:
            raise StudyError(f"{args.study} already has an owner secret.")
        secret = require_secret(OWNER_ENV, "new owner secret", "new owner secret", confirm=True)
        store.protect(secret)
    print(f"{args.study} is protected: unblinding and reading now need secrets")
    return 0


def run_add_reader(args) -> int:
    """Enrol a reader with a PIN, or reset a PIN."""
    with owner_store(Path(args.study), "add-reader") as store:
        pin = require_secret(READER_ENV, f"PIN of reader {args.reader}", "reader's PIN", True)
        store.set_reader_pin(args.reader, pin)
    print(f"reader {args.reader.strip()} has a PIN in {args.study}")
    return 0


def run_close(args) -> int:
    """Close a study."""
    with owner_store(Path(args.study), "close") as store:
        closed = store.close_study()
    print(f"{args.study} is closed since {closed}: it takes no more answers")
    return 0


def run_access_log(args) -> int:
    """Print the access log."""
    with owner_store(Path(args.study), "access-log") as store:
        entries = store.access_log()
    if args.json:
        print(json.dumps([e.__dict__ for e in entries], indent=2))
        return 0
    for e in entries:
        print(f"{e.at}  {e.who} ({e.role})  {e.action}: {e.outcome}")
    return 0
