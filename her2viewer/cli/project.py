"""Verbs of projects: ``her2viewer project <create|add|import|status|run|export|gc|relink>``."""

from __future__ import annotations

import json

from her2viewer.argtypes import bounded
from her2viewer.cli.options import add_json_option, add_output_option, add_progress_options
from her2viewer.cli.progress import progress_reporter
from her2viewer.project.cohort import add_slides, import_csv, relink
from her2viewer.project.results import collect_garbage, export_results, status
from her2viewer.project.run import ENGINES, run_project
from her2viewer.project.store import Project
from her2viewer.project.tasks import ANALYSES, parse_analyses


def register(subparsers) -> None:
    """Add the ``project`` verb and its sub-verbs."""
    project = subparsers.add_parser("project", help="projects: cases, cohort runs, results")
    verbs = project.add_subparsers(dest="project_verb", metavar="PROJECT_VERB")
    verbs.required = True

    create = verbs.add_parser("create", help="make a new project folder")
    create.add_argument("project", help="new (or empty) folder")
    create.set_defaults(func=run_create)

    add = verbs.add_parser("add", help="add slides or folders of slides (paired into cases)")
    add.add_argument("project")
    add.add_argument("slides", nargs="+", help="slide files or folders")
    add.set_defaults(func=run_add)

    imp = verbs.add_parser("import", help="add the cases of a cohort CSV (labels.csv layout)")
    imp.add_argument("project")
    imp.add_argument("table", help="CSV: case_id, he_path, ihc_path[, patient_id, metadata...]")
    imp.set_defaults(func=run_import)

    stat = verbs.add_parser("status", help="cases, missing slides and results per analysis")
    stat.add_argument("project")
    add_json_option(stat, "the status")
    stat.set_defaults(func=run_status)

    run = verbs.add_parser("run", help="run analyses on every case not done yet")
    run.add_argument("project")
    run.add_argument(
        "--analyses",
        required=True,
        help=f"comma-separated, from {','.join(ANALYSES)}",
    )
    run.add_argument("--engine", choices=ENGINES, default="local", help="default local")
    run.add_argument("--address", help="Ray cluster to join (default: start a local one)")
    run.add_argument(
        "--gpus-per-task", type=bounded(float, 0, 64), default=0, help="GPUs per Ray model actor"
    )
    run.add_argument(
        "--actors",
        type=bounded(int, 1, 1024),
        default=0,
        help="Ray actors keeping the models loaded (default: one per GPU share, if any)",
    )
    run.add_argument(
        "--workers",
        type=bounded(int, 1, 1024),
        help="local processes (default 1) or CPUs of a local Ray cluster (default all)",
    )
    add_json_option(run, "what the run did")
    add_progress_options(run)
    run.set_defaults(func=run_run)

    exp = verbs.add_parser("export", help="one results table: a row per case, a column per figure")
    exp.add_argument("project")
    add_output_option(exp, "results.csv or results.parquet", required=True)
    exp.set_defaults(func=run_export)

    gc = verbs.add_parser("gc", help="delete artefacts no result refers to any more")
    gc.add_argument("project")
    gc.set_defaults(func=run_gc)

    rel = verbs.add_parser("relink", help="find moved slides in FOLDER by their fingerprint")
    rel.add_argument("project")
    rel.add_argument("folder")
    rel.set_defaults(func=run_relink)


def run_create(args) -> int:
    """Create the project folder."""
    project = Project.create(args.project)
    print(f"created project {project.folder}")
    return 0


def run_add(args) -> int:
    """Add slides, paired into cases."""
    cases = add_slides(Project.open(args.project), args.slides)
    for case in cases:
        print(f"{case.case_id}: H&E {case.he or '-'}, IHC {case.ihc or '-'}")
    return 0


def run_import(args) -> int:
    """Add or update the cases of a cohort CSV."""
    cases = import_csv(Project.open(args.project), args.table)
    print(f"imported {len(cases)} cases from {args.table}")
    return 0


def run_status(args) -> int:
    """Print the status (readable or JSON)."""
    report = status(Project.open(args.project))
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"{report['project']}: {report['cases']} cases, {report['slides']} slides")
    for case_id, role, path in report["slides_missing"]:
        print(f"  missing: {case_id} {role} {path} (find it with 'project relink')")
    for name, entry in report["analyses"].items():
        print(f"  {name:8} {entry['done']} done, {entry['failed']} failed")
        for case_id, error in entry["errors"].items():
            print(f"    {case_id}: {error}")
    return 0


def run_run(args) -> int:
    """Run the analyses and say what was done (exit 130 when Ctrl-C cancelled the run: the
    cases in flight were finished and stored, the rest left for the next run)."""
    project = Project.open(args.project)
    with progress_reporter(args, "project run", "tasks") as progress:
        report = run_project(
            project,
            parse_analyses(args.analyses),
            engine=args.engine,
            workers=args.workers,
            address=args.address,
            gpus_per_task=args.gpus_per_task,
            actors=args.actors,
            progress=progress,
        )
    if args.json:
        print(json.dumps(vars(report)))
    elif report.cancelled:
        print(
            f"cancelled: {report.done} tasks done, {report.failed} failed, {report.not_run} not "
            "run (the next 'project run' does them)"
        )
    elif report.planned == 0:
        print("nothing to do: every case has these analyses for the same inputs")
    else:
        print(
            f"{report.done} tasks done, {report.failed} failed, in {report.seconds:.1f} s "
            f"({args.engine} engine); see 'project status'"
        )
    return 130 if report.cancelled else 0


def run_export(args) -> int:
    """Write the results table."""
    out = export_results(Project.open(args.project), args.out)
    print(f"wrote {out}")
    return 0


def run_gc(args) -> int:
    """Remove stale artefacts."""
    removed, freed = collect_garbage(Project.open(args.project))
    print(f"removed {len(removed)} stale artefacts ({freed / 1e6:.1f} MB)")
    return 0


def run_relink(args) -> int:
    """Find moved slides again."""
    project = Project.open(args.project)
    moved = relink(project, args.folder)
    for old, new in moved.items():
        print(f"{old} -> {new}")
    left = len(status(project)["slides_missing"])
    print(f"relinked {len(moved)} slides; {left} still missing")
    return 0
