"""Verb group ``annotations``: convert, measure, transfer, import and export annotation files.

Files are QuPath GeoJSON, ASAP XML or ImageScope XML, read by their content and written by
their suffix or ``--format`` (:mod:`her2viewer.annotations.formats`); a slide's own
annotations live in its store (:mod:`her2viewer.annotations.store`), found by the slide's
fingerprint.
"""

from __future__ import annotations

import json
import math
import uuid
from pathlib import Path

from her2viewer.annotations.commands import Add, CommandStack, EditClasses, Remove
from her2viewer.annotations.formats import (
    FORMATS,
    output_format,
    read_annotations,
    write_annotations,
)
from her2viewer.annotations.model import (
    AnnotationDocument,
    AnnotationError,
    annotation_from_feature,
)
from her2viewer.annotations.store import AnnotationStore, journal_path, store_path
from her2viewer.annotations.transfer import transfer_features
from her2viewer.cli.options import add_json_option, add_output_option
from her2viewer.geometry.shapes import measure
from her2viewer.outputs import check_output_file
from her2viewer.registration import Registration
from her2viewer.slide import open_slide
from her2viewer.tables import write_csv

#: The note ``measure`` gives when the slide has no pixel size.
NO_MPP_NOTE = "slide has no pixel size; measures are in level-0 pixels"
_UM_COLUMNS = ("area_um2", "area_mm2", "perimeter_um", "length_um", "n_points")
_PX_COLUMNS = ("area_px2", "perimeter_px", "length_px", "n_points")
_ID_COLUMNS = ("id", "name", "class", "kind")
_FORMAT_HELP = "format of OUT: " + ", ".join(FORMATS) + " (default: from its suffix)"


def register(subparsers) -> None:
    """Add the ``annotations`` verb group."""
    group = subparsers.add_parser(
        "annotations",
        help="convert, measure, transfer, import and export annotations",
        description="Annotation files: QuPath GeoJSON, ASAP XML and ImageScope XML. Exit "
        "status 2 with one line on stderr, nothing written, when a file or option is wrong.",
    )
    verbs = group.add_subparsers(dest="annotations_verb", metavar="ANNOTATIONS_VERB")
    verbs.required = True
    _register_convert(verbs)
    _register_measure(verbs)
    _register_transfer(verbs)
    _register_import(verbs)
    _register_export(verbs)


def _add_format_option(parser) -> None:
    """Add ``--format`` (the output format; an .xml file needs it)."""
    parser.add_argument("--format", choices=FORMATS, help=_FORMAT_HELP)


def _register_convert(verbs) -> None:
    convert = verbs.add_parser(
        "convert",
        help="convert between GeoJSON, ASAP XML and ImageScope XML",
        description="Read IN (format found from its content) and write OUT (format from its "
        "suffix, or --format; .xml needs --format asap or imagescope).",
    )
    convert.add_argument("input", metavar="IN", help="annotation file to read")
    convert.add_argument("output", metavar="OUT", help="annotation file to write")
    _add_format_option(convert)
    convert.set_defaults(func=run_convert)


def _register_measure(verbs) -> None:
    measure_ = verbs.add_parser(
        "measure",
        help="measure each annotation (area, perimeter, length, points) on a slide",
        description="Measure every object of ANNOTATIONS in micrometres with SLIDE's pixel "
        "size, or in level-0 pixels (with a note) when the slide has none.",
    )
    measure_.add_argument("slide", help="slide the annotations were drawn on")
    measure_.add_argument("annotations", help="annotation file (GeoJSON, ASAP or ImageScope)")
    add_json_option(measure_, "the measures")
    add_output_option(measure_, "CSV file of the measures to write")
    measure_.set_defaults(func=run_measure)


def _register_transfer(verbs) -> None:
    transfer = verbs.add_parser(
        "transfer",
        help="carry annotations onto the other slide of a registered pair",
        description="Map ANNOTATIONS through a registration JSON (written by 'her2viewer "
        "register' or the landmark tool): its matrix maps the moving slide onto the fixed "
        "slide; --inverse maps fixed onto moving. Objects are marked as transferred.",
    )
    transfer.add_argument("annotations", help="annotation file on the moving slide")
    transfer.add_argument(
        "--transform", required=True, metavar="REG.json", help="registration JSON file"
    )
    transfer.add_argument(
        "--inverse", action="store_true", help="map from the fixed slide to the moving slide"
    )
    add_output_option(transfer, "annotation file to write", required=True)
    _add_format_option(transfer)
    transfer.set_defaults(func=run_transfer)


def _register_import(verbs) -> None:
    imp = verbs.add_parser(
        "import",
        help="add an annotation file to a slide's annotations (what the viewer shows)",
        description="Add the annotations of FILE to SLIDE's annotation store; --replace "
        "removes the stored ones first. Detections and cells are not imported.",
    )
    imp.add_argument("slide", help="slide file")
    imp.add_argument("file", help="annotation file (GeoJSON, ASAP or ImageScope)")
    imp.add_argument(
        "--replace", action="store_true", help="remove the slide's stored annotations first"
    )
    imp.set_defaults(func=run_import)


def _register_export(verbs) -> None:
    exp = verbs.add_parser(
        "export",
        help="write a slide's stored annotations to a file",
        description="Write the annotations stored for SLIDE (drawn in the viewer or "
        "imported) to OUT (format from its suffix, or --format).",
    )
    exp.add_argument("slide", help="slide file")
    exp.add_argument("output", metavar="OUT", help="annotation file to write")
    _add_format_option(exp)
    exp.set_defaults(func=run_export)


def run_convert(args) -> int:
    """Convert one annotation file to another format."""
    fmt = output_format(args.output, args.format)
    check_output_file(args.output)
    features = read_annotations(args.input)
    write_annotations(args.output, features, fmt)
    print(f"wrote {_count(features)} to {args.output} ({fmt})")
    return 0


def _count(features) -> str:
    """Return ``"N object(s)"``."""
    return f"{len(features)} object{'' if len(features) == 1 else 's'}"


def slide_mpp(info) -> float | None:
    """Return a slide's level-0 pixel size in micrometres (the mean of x and y), or None."""
    sizes = [m for m in (info.mpp_x, info.mpp_y) if m]
    return math.sqrt(math.prod(sizes)) if len(sizes) == 2 else (sizes[0] if sizes else None)


def measure_rows(features, mpp: float | None) -> tuple[tuple[str, ...], list[dict]]:
    """Return the columns and one row per feature of the ``measure`` verb."""
    columns = _ID_COLUMNS + (_UM_COLUMNS if mpp else _PX_COLUMNS)
    rows = []
    for feature in features:
        values = measure(feature.geometry, mpp)
        row = {
            "id": feature.id,
            "name": feature.name or "",
            "class": feature.class_name or "",
            "kind": annotation_from_feature(feature).kind,
        }
        row.update({c: values.get(c) for c in columns[len(_ID_COLUMNS) :]})
        rows.append(row)
    return columns, rows


def run_measure(args) -> int:
    """Measure each object of an annotation file with a slide's pixel size."""
    if args.out:
        check_output_file(args.out)
    features = read_annotations(args.annotations)
    with open_slide(args.slide) as slide:
        mpp = slide_mpp(slide.info)
    columns, rows = measure_rows(features, mpp)
    if args.out:
        write_csv(args.out, columns, ([row[c] for c in columns] for row in rows))
    if args.json:
        result = {"slide": args.slide, "annotations": args.annotations, "mpp": mpp}
        if mpp is None:
            result["note"] = NO_MPP_NOTE
        print(json.dumps({**result, "objects": rows}, indent=2))
        return 0
    _print_table(columns, rows)
    if mpp is None:
        print(f"note: {NO_MPP_NOTE}")
    if args.out:
        print(f"wrote {len(rows)} rows to {args.out}")
    return 0


def _cell(value) -> str:
    """Return a table cell: numbers to a readable precision, nothing for None."""
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1 else f"{value:,.1f}"
    return str(value)


def _print_table(columns, rows) -> None:
    """Print the measures as a table (ids shortened to 8 characters)."""
    from rich.console import Console  # only when a table is printed
    from rich.table import Table

    table = Table(*columns, box=None, pad_edge=False)
    for row in rows:
        cells = [_cell(row[c]) for c in columns]
        cells[0] = cells[0][:8]
        table.add_row(*cells)
    Console(highlight=False, soft_wrap=True).print(table)


def run_transfer(args) -> int:
    """Map an annotation file through a registration (or its inverse)."""
    fmt = output_format(args.out, args.format)
    check_output_file(args.out)
    registration = Registration.load(args.transform)
    if args.inverse:
        registration = registration.inverse()
    source = Path(registration.moving).name or ("fixed" if args.inverse else "moving")
    features = read_annotations(args.annotations)
    write_annotations(
        args.out, transfer_features(features, registration.matrix, source=source), fmt
    )
    direction = "fixed -> moving" if args.inverse else "moving -> fixed"
    print(f"wrote {_count(features)} mapped {direction} to {args.out} ({fmt})")
    return 0


def _slide_store(slide_path: str) -> tuple[Path, float | None]:
    """Return the annotation store path and the pixel size of a slide."""
    with open_slide(slide_path) as slide:
        return store_path(slide.info.fingerprint), slide_mpp(slide.info)


def _open_store(path: Path, mpp: float | None) -> AnnotationStore:
    """Open (and after a crash, recover) the annotation store at ``path``; print its notices."""
    store = AnnotationStore.open(path, mpp=mpp)
    for notice in store.notices:
        print(f"note: {notice}")
    return store


def run_import(args) -> int:
    """Add (or with ``--replace`` substitute) a file's annotations to a slide's store."""
    features = read_annotations(args.file)
    path, mpp = _slide_store(args.slide)
    incoming = AnnotationDocument.from_features(features, mpp)
    store = _open_store(path, mpp)
    try:
        document = store.document
        stack = CommandStack(document)
        replaced = len(document) if args.replace else 0
        if replaced:
            stack.push(Remove([ann.id for ann in document]))
        new_classes = [c for c in incoming.classes if document.path_class(c.name) is None]
        if new_classes:
            stack.push(EditClasses([*document.classes, *new_classes]))
        anns = [a if a.id not in document else a.replace(id=uuid.uuid4().hex) for a in incoming]
        if anns:
            stack.push(Add(anns, f"import {Path(args.file).name}"))
        total = len(document)
    finally:
        store.close()
    skipped = len(features) - len(anns)
    print(
        f"imported {len(anns)} annotation{'' if len(anns) == 1 else 's'} into the store of "
        f"{args.slide} ({total} stored"
        + (f", {replaced} replaced" if replaced else "")
        + (f", {skipped} detections/cells not imported" if skipped else "")
        + f"): {path}"
    )
    return 0


def run_export(args) -> int:
    """Write a slide's stored annotations to a file."""
    fmt = output_format(args.output, args.format)
    check_output_file(args.output)
    path, mpp = _slide_store(args.slide)
    if not (path.is_file() or journal_path(path).is_file()):
        raise AnnotationError(
            f"{args.slide} has no stored annotations (none drawn or imported; no {path})."
        )
    store = _open_store(path, mpp)
    try:
        features = store.document.to_features()
    finally:
        store.close()
    write_annotations(args.output, features, fmt)
    print(f"wrote {_count(features)} to {args.output} ({fmt})")
    return 0
