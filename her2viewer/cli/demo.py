"""Verbs ``demo`` (the headless pipeline on the demo case) and ``demo-data`` (a cohort)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from her2viewer.argtypes import bounded
from her2viewer.case_report import render_case_report
from her2viewer.cells.profiles import MARKERS
from her2viewer.cli.options import SEED, add_json_option, add_progress_options, size_type
from her2viewer.cli.progress import progress_reporter
from her2viewer.demo import analyse_demo_case, ensure_demo_case, format_summary
from her2viewer.slide.synthetic import write_cohort

#: Most cases ``demo-data`` writes.
MAX_CASES = 10_000
#: Sides (px) of a synthetic slide: write_cohort needs 512, larger than the maximum fills a disk.
MIN_SIDE, MAX_SIDE = 512, 100_000


def register(subparsers) -> None:
    """Add the ``demo`` and ``demo-data`` verbs."""
    demo = subparsers.add_parser("demo", help="run the headless pipeline on the demo case")
    add_json_option(demo, "the summary")
    demo.add_argument(
        "--report", type=Path, metavar="DIR", help="also write case_report.html and .pdf in DIR"
    )
    demo.set_defaults(func=run_demo)

    data = subparsers.add_parser("demo-data", help="write a synthetic paired H&E/IHC cohort")
    data.add_argument("out", help="output folder")
    data.add_argument(
        "--cases",
        type=bounded(int, 1, MAX_CASES),
        default=8,
        help=f"number of cases, 1 to {MAX_CASES} (default 8)",
    )
    data.add_argument("--seed", type=SEED, default=0, help="random seed (default 0)")
    data.add_argument(
        "--size",
        type=size_type("8000x6000", MIN_SIDE, MAX_SIDE),
        default=(8000, 6000),
        help=f"WxH, each side {MIN_SIDE} to {MAX_SIDE} (default 8000x6000)",
    )
    data.add_argument(
        "--workers", type=bounded(int, 1, 64), default=1, help="cases written in parallel"
    )
    data.add_argument(
        "--cells",
        action="store_true",
        help="draw the IHC slides cell by cell and write each cell's truth (cells.csv) and the "
        "guideline category (truth.json); no H&E",
    )
    data.add_argument(
        "--marker", choices=MARKERS, help="stain of the --cells slides (default her2)"
    )
    add_progress_options(data)
    data.set_defaults(func=run_demo_data)


def run_demo(args) -> int:
    """Generate the demo case if needed, analyse it and print the summary."""
    case_dir = ensure_demo_case()
    summary = analyse_demo_case(case_dir)
    print(json.dumps(summary, indent=2) if args.json else format_summary(summary))
    if args.report:
        render_case_report(summary, args.report)
    return 0


def run_demo_data(args) -> int:
    """Write a synthetic cohort and print where its labels are."""
    from her2viewer.cells.truth import CellTruthError, write_cell_cohort  # the engine: lazily

    if args.marker and not args.cells:
        raise CellTruthError("--marker applies to cell-by-cell slides only: add --cells.")
    start = time.perf_counter()
    with progress_reporter(args, "demo-data", "cases") as progress:
        if args.cells:
            labels = write_cell_cohort(
                Path(args.out), args.cases, args.marker or "her2", args.seed, args.size,
                args.workers, progress,
            )  # fmt: skip
        else:
            labels = write_cohort(
                Path(args.out), args.cases, args.seed, args.size, args.workers, progress
            )
    elapsed = time.perf_counter() - start
    print(
        f"wrote {args.cases} synthetic cases to {labels.parent} in {elapsed:.1f} s; "
        f"labels: {labels}"
    )
    return 0
