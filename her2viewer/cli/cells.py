"""Verb ``cells``: find and measure every cell of an IHC slide, and score it by the guideline.

``cells detect`` finds, measures and classes the cells (no guideline); ``cells score`` adds
the marker's guideline (HER2 breast or gastric, ER/PR, Ki67). Either writes the cell table
(CSV or Parquet), QuPath GeoJSON cells or the whole result (``.npz``) by the suffix of
``-o``, and ``--geojson`` for the cells beside a table.
"""

from __future__ import annotations

import json
from pathlib import Path

from her2viewer.analysis.cells import SITES, SPECIMENS, CellsOptions, CellsResult, analyse_cells
from her2viewer.annotations.roi import region_text
from her2viewer.argtypes import bounded
from her2viewer.case_report import render_case_report
from her2viewer.cells.engine import KI67_METHODS
from her2viewer.cells.profiles import BUILT_IN, MARKERS
from her2viewer.cli.options import (
    add_device_option,
    add_json_option,
    add_output_option,
    add_progress_options,
    add_roi_options,
    roi_region,
)
from her2viewer.cli.progress import progress_reporter
from her2viewer.errors import Her2ViewerError
from her2viewer.outputs import check_output_file, prepare_output_dir
from her2viewer.slide import open_slide

#: What ``-o`` writes, by suffix.
OUTPUT_SUFFIXES = {
    ".csv": "table",
    ".parquet": "table",
    ".geojson": "geojson",
    ".json": "geojson",
    ".npz": "result",
}
#: Pixel sizes ``--mpp`` accepts (um/px).
MPP = bounded(float, 0.0, 100.0, low_open=True)


class CellsOutputError(Her2ViewerError):
    """An output path whose kind cannot be told from its suffix."""


def _common(parser) -> None:
    parser.add_argument("slide", help="IHC slide or plain image (PNG/JPEG/TIFF)")
    add_roi_options(parser)
    parser.add_argument(
        "--profile",
        help=f"scoring profile: a saved JSON file or one of {', '.join(BUILT_IN)} "
        "(default: the marker's)",
    )
    parser.add_argument(
        "--mpp", type=MPP, help="pixel size in um/px for images that record none (e.g. 0.5)"
    )
    parser.add_argument(
        "--model", help="TorchScript (.pt) or ONNX nucleus model instead of the classical one"
    )
    add_output_option(
        parser,
        "write the cell table (.csv, .parquet), QuPath cells (.geojson) or the result (.npz)",
    )
    parser.add_argument("--geojson", help="also write the cells as QuPath GeoJSON")
    add_json_option(parser)
    add_device_option(parser)
    add_progress_options(parser)


def register(subparsers) -> None:
    """Add the ``cells`` verb and its ``detect`` and ``score`` actions."""
    cells = subparsers.add_parser("cells", help="cell by cell: detect, measure, score IHC")
    verbs = cells.add_subparsers(dest="cells_verb", metavar="ACTION")
    verbs.required = True
    detect = verbs.add_parser(
        "detect",
        help="find, measure and class every cell (no guideline)",
        description="Find every nucleus and cell of an IHC slide, measure them and class "
        "them by the profile's thresholds. Without --roi every detected cell is counted.",
    )
    _common(detect)
    detect.add_argument("--marker", choices=MARKERS, default="her2", help="(default her2)")
    detect.set_defaults(func=run_cells, score=False)
    score = verbs.add_parser(
        "score",
        help="score an IHC slide cell by cell (HER2, ER, PR, Ki67 guidelines)",
        description="Find and class every tumor cell and apply the marker's guideline: HER2 "
        "ASCO/CAP 2018/2023 (breast) or Hofmann/CAP 2016 (gastric), ER/PR ASCO/CAP 2020, "
        "Ki67 IKWG 2021. Tumor cells are those inside --roi; without it every detected "
        "cell is counted and the result says so.",
    )
    _common(score)
    score.add_argument("--marker", choices=MARKERS, required=True)
    score.add_argument("--site", choices=SITES, default="breast", help="HER2 tumor site")
    score.add_argument(
        "--specimen", choices=SPECIMENS, default="resection", help="HER2 gastric specimen"
    )
    score.add_argument(
        "--ki67-method",
        choices=KI67_METHODS,
        default="global",
        help="Ki67 index over every tumor cell (global, IKWG's default) or in the densest "
        "0.2 mm² circle of at least 500 cells (hot-spot)",
    )
    score.add_argument(
        "--report",
        type=Path,
        metavar="DIR",
        help="also write the case report (case_report.html and .pdf) in DIR",
    )
    score.set_defaults(func=run_cells, score=True)


def _output_kind(path: str) -> str:
    kind = OUTPUT_SUFFIXES.get(Path(path).suffix.lower())
    if kind is None:
        raise CellsOutputError(
            f"-o {path}: give a file ending in {', '.join(OUTPUT_SUFFIXES)} "
            "(cell table, QuPath cells or the whole result)."
        )
    return kind


def _write(result: CellsResult, path: str, kind: str) -> None:
    if kind == "table":
        result.write_table(path)
    elif kind == "geojson":
        result.write_geojson(path)
    else:
        result.save(path)


def _print_readable(summary: dict) -> None:
    print(f"{summary['n_cells']} cells ({summary['marker'].upper()}, profile "
          f"{summary['profile']}, {summary['detector']} detector)")  # fmt: skip
    print(f"Tumor cells: {region_text(summary) if summary['region'] else summary['tumor_cells']}")
    for name, percent in summary["class_percent"].items():
        print(f"  {name:24s} {summary['class_counts'][name]:7d}  {percent:5.1f} %")
    print(f"  positive {summary['n_positive']} ({summary['positive_percent']:.1f} %)")
    if "category" in summary:
        print(f"Category {summary['category']} ({summary['label']}): {summary['rule']}.")
        print(f"  {summary['citation']}")
        for key in ("h_score", "allred"):
            if key in summary:
                print(f"  {key}: {summary[key]}")
        if "hot_spot" in summary["figures"]:
            spot = summary["figures"]["hot_spot"]
            print(f"  hot spot: {spot['n_cells']} cells in {spot['area_mm2']} mm² around "
                  f"({spot['x']:.0f}, {spot['y']:.0f}) px")  # fmt: skip


def run_cells(args) -> int:
    """Detect (and score) the cells of one slide; print them, write what ``-o`` asks."""
    outputs = [(args.out, _output_kind(args.out))] if args.out else []
    outputs += [(args.geojson, "geojson")] if args.geojson else []
    for path, _ in outputs:
        check_output_file(path)
    report = getattr(args, "report", None)
    if report is not None:
        prepare_output_dir(report)
    options = CellsOptions(
        marker=args.marker,
        profile=args.profile,
        mpp=args.mpp,
        region=roi_region(args),
        tumor_site=getattr(args, "site", "breast"),
        specimen=getattr(args, "specimen", "resection"),
        ki67_method=getattr(args, "ki67_method", "global"),
        model=args.model,
        score=args.score,
        outlines=any(kind != "table" for _, kind in outputs),
        device=_device(args.device) if args.model else "cpu",
    )
    with (
        open_slide(args.slide) as slide,
        progress_reporter(args, f"cells {'score' if args.score else 'detect'}", "tiles") as bar,
    ):
        result = analyse_cells(slide, None, options, bar.context())
    for path, kind in outputs:
        _write(result, path, kind)
    if report is not None:
        _write_report(result, args.slide, report)
    summary = result.summary()
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        _print_readable(summary)
    return 0


def _write_report(result: CellsResult, slide: str, folder: Path) -> None:
    """The case report of the scored slide: its thumbnail, then the cells section."""
    size = [int(v) for v in result.slide_size]
    case = {"case": Path(slide).stem, "ihc": {"slide": slide, "size": size}}
    render_case_report(case, folder, cells=result)


def _device(name: str) -> str:
    from her2viewer.devices import choose_device

    return str(choose_device(name))
