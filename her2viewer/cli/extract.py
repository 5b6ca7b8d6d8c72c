"""The ``extract`` verb: slides (or a cohort CSV) -> CLAM-compatible features files."""

from __future__ import annotations

import contextlib
import csv
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from her2viewer.cli.options import (
    add_batching_options,
    add_device_option,
    add_json_option,
    add_output_option,
    add_patch_grid_options,
    add_progress_options,
    add_weights_options,
)
from her2viewer.cli.progress import Reporter, progress_reporter
from her2viewer.errors import ModelError, OutputError
from her2viewer.outputs import check_output_file, output_error, prepare_output_dir
from her2viewer.tissue import PRESETS

if TYPE_CHECKING:
    from her2viewer.features.encoders import Encoder

PATH_COLUMNS = ("slide_path", "path", "he_path")
#: The lock file that keeps two extractions out of one output folder.
LOCK_NAME = ".extract.lock"
NAME_COLUMNS = ("slide_id", "case_id")


def add_encoder_options(parser) -> None:
    """Add ``--encoder``, ``--weights`` (``--encoder-weights``), ``--download``,
    ``--random-weights``, ``--small`` and ``--legacy-256``."""
    parser.add_argument(
        "--encoder",
        default="resnet50_trunc",
        help="encoder name (`her2viewer encoders list`) or torchscript:FILE "
        "(default resnet50_trunc)",
    )
    add_weights_options(parser, "--encoder-weights", dest="encoder_weights")
    parser.add_argument(
        "--legacy-256", action="store_true", help="CLAM's older preprocessing: no resize to 224"
    )


def encoder_from_args(args) -> Encoder:
    """Build the encoder the command line asked for."""
    from her2viewer.features.encoders import build_encoder  # torch only when a verb runs

    flags = {
        "legacy_256": args.legacy_256 and args.encoder == "resnet50_trunc",
        "small": args.small,
        "download": args.download,
    }
    if (args.small or args.download) and args.encoder.startswith(
        ("resnet50_trunc", "torchscript:")
    ):
        raise ModelError(
            f"--small and --download apply to the foundation models, not {args.encoder}."
        )
    return build_encoder(
        args.encoder,
        weights=args.encoder_weights,
        random_seed=args.random_weights,
        **{k: True for k, v in flags.items() if v},
    )


def register(subparsers) -> None:
    """Add the ``extract`` verb."""
    p = subparsers.add_parser("extract", help="encode tissue patches -> features h5 (CLAM layout)")
    p.add_argument(
        "slides", nargs="+", metavar="SLIDE", help="slide files, a .txt list or a cohort CSV"
    )
    add_output_option(p, "output folder (h5_files/, pt_files/)", required=True)
    add_encoder_options(p)
    add_device_option(p)
    add_batching_options(p)
    add_patch_grid_options(p)
    p.add_argument("--preset", choices=sorted(PRESETS), default="default")
    p.add_argument("--pt", action="store_true", help="also write CLAM's pt_files/<slide>.pt")
    p.add_argument(
        "--layout",
        choices=("clam", "trident"),
        default="clam",
        help="trident: also write TRIDENT's features_<encoder>/<slide>.h5 (default clam)",
    )
    p.add_argument(
        "--decode",
        choices=("openslide", "raw"),  # features.rawtiles.DECODE_CHOICES (torch-free here)
        default="openslide",
        help="raw: decode the slide's JPEG tiles in batches on the device where the slide "
        "stores them so, else OpenSlide; the summary says which (default openslide)",
    )
    add_json_option(p, "the summaries")
    add_progress_options(p)
    p.set_defaults(func=run_extract)


def slide_list(inputs: list[str]) -> list[tuple[str, Path]]:
    """Expand slide paths, ``.txt`` lists (one path a line) and cohort CSVs into unique
    ``(name, path)`` pairs.

    Raises
    ------
    ModelError
        A CSV without a slide path column, two slides with the same name, or a name
        that is not a plain file name (``../x``, ``/abs``), since files are named after it.
    """
    pairs = []
    for item in inputs:
        path = Path(item)
        suffix = path.suffix.lower()
        if suffix == ".csv":
            pairs.extend(_csv_slides(path))
        elif suffix == ".txt":
            pairs.extend(_list_slides(path))
        else:
            pairs.append((path.stem, path))
    for name, path in pairs:
        _check_name(name, path)
    names = [name for name, _ in pairs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ModelError(
            f"Several slides are named {', '.join(dupes)}; give a CSV with a case_id or "
            "slide_id column to name them."
        )
    return pairs


def _check_name(name: str, slide: Path) -> None:
    """Refuse a slide name that would put its output files outside the output folder."""
    plain = name == Path(name).name and not name.startswith(".") and "\\" not in name
    if not plain or not name.isprintable():
        raise ModelError(
            f"The name '{name}' given to {slide} is not a plain file name; name each slide "
            "without folders, a leading dot or control characters."
        )


def _list_slides(path: Path) -> list[tuple[str, Path]]:
    if not path.is_file():
        raise ModelError(f"Slide list not found: {path}.")
    lines = [line.strip() for line in path.read_text().splitlines()]
    slides = [path.parent / line for line in lines if line and not line.startswith("#")]
    return [(slide.stem, slide) for slide in slides]


def _csv_slides(path: Path) -> list[tuple[str, Path]]:
    if not path.is_file():
        raise ModelError(f"Cohort CSV not found: {path}.")
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    columns = rows[0].keys() if rows else []
    path_col = next((c for c in PATH_COLUMNS if c in columns), None)
    if path_col is None:
        raise ModelError(f"{path.name} needs one of the columns {', '.join(PATH_COLUMNS)}.")
    name_col = next((c for c in NAME_COLUMNS if c in columns), None)
    out = []
    for row in rows:
        slide = path.parent / row[path_col]
        out.append((row[name_col] if name_col else slide.stem, slide))
    return out


def extract_slide(
    name: str, path: Path, encoder: Encoder, args, progress: Reporter | None = None
) -> dict:
    """Segment, patch (or reuse the coords file) and extract one slide; return its summary.

    Features and coordinates already in the output folder are reused only when
    they were made from this very slide (its fingerprint) with the same patch
    settings; features from another encoder are refused.
    """
    from her2viewer.features.engine import extract_features
    from her2viewer.features.store import h5_path, pt_path
    from her2viewer.slide import open_slide

    out = Path(args.out)
    target = h5_path(out, name)
    for output in (target, *([pt_path(out, name)] if args.pt else [])):
        check_output_file(output)  # a folder in the way is said before the work, not after
    with open_slide(path) as slide:
        if _reusable_features(target, slide, encoder, args):
            return {"slide": name, "status": "exists", "features": str(_laid_out(target, args))}
        grid = _patch_grid(out / "patches" / f"{name}.h5", name, slide, args)
        result = extract_features(
            slide,
            grid,
            encoder,
            target,
            device=args.device,
            batch_size=args.batch_size,
            workers=args.workers,
            progress=progress,
            pt_path=pt_path(out, name) if args.pt else None,
            decode=args.decode,
        )
    return {
        "slide": name,
        "status": "done",
        "patches": result.n_patches,
        "dim": result.dim,
        "resumed_from": result.resumed_from,
        "patches_per_s": round(result.patches_per_s, 2),
        "device": result.device,
        "decode": result.decode,
        "features": str(_laid_out(result.path, args)),
    }


def _laid_out(h5: Path, args) -> Path:
    """The features file in the layout asked for: ours, or a TRIDENT copy of it."""
    if args.layout != "trident":
        return h5
    from her2viewer.features.store import read_features
    from her2viewer.features.trident import trident_path, write_trident

    feats = read_features(h5)
    return write_trident(trident_path(args.out, feats.encoder["encoder"], h5.stem), feats, h5.stem)


def _same_settings(fingerprint: str, target_size: int, size0: int, slide, args) -> bool:
    """True when a stored slide fingerprint and patch geometry (delivered side, level-0
    side) are those this run would use."""
    from her2viewer.tissue import patch_scale

    expected0 = patch_scale(slide, args.mag, args.patch_size)[0]
    return (fingerprint, target_size, size0) == (slide.info.fingerprint, args.patch_size, expected0)


def _reusable_features(target: Path, slide, encoder: Encoder, args) -> bool:
    """True when ``target`` already holds this slide's features with these settings.

    Raises
    ------
    ModelError
        When ``target`` holds features from another encoder.
    """
    from her2viewer.features.store import read_features

    if not target.exists():
        return False
    stored = read_features(target)
    if stored.encoder.get("encoder_identity") != encoder.identity:
        raise ModelError(
            f"{target} holds features from another encoder; choose another output folder."
        )
    return _same_settings(
        stored.encoder.get("slide_fingerprint"),
        int(stored.attrs.get("target_patch_size", -1)),
        int(stored.attrs.get("patch_size_level0", -1)),
        slide,
        args,
    )


def _patch_grid(coords_file: Path, name: str, slide, args):
    """Reuse the coords file when it was laid on this slide with these settings; else patch."""
    from her2viewer.tissue import (
        check_grid_fits,
        make_patch_grid,
        read_coords_h5,
        resolve_params,
        segment_tissue,
        write_coords_h5,
    )

    if coords_file.exists():
        grid = read_coords_h5(coords_file)
        if _same_settings(grid.fingerprint, grid.target_size, grid.patch_size_level0, slide, args):
            check_grid_fits(grid, slide, coords_file)
            return grid
    seg = segment_tissue(slide, resolve_params(args.preset))
    grid = make_patch_grid(slide, seg, magnification=args.mag, patch_size=args.patch_size)
    grid.name = name
    write_coords_h5(coords_file, grid)
    return grid


@contextlib.contextmanager
def extraction_lock(out: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``out/.extract.lock`` while extracting into ``out``.

    Raises
    ------
    OutputError
        When another extraction holds the lock, or the lock file cannot be written.
    """
    lock = out / LOCK_NAME
    try:
        handle = open(lock, "a")  # noqa: SIM115 - closed below, which releases the lock
    except OSError as exc:
        raise output_error(lock, exc) from exc
    with handle:
        if not _try_lock(handle):
            raise OutputError(
                f"Another extraction is writing to {out}; wait for it to finish or "
                "choose another output folder."
            )
        yield


def _try_lock(handle) -> bool:
    """Take an exclusive lock on an open file without waiting; False when another holds it.

    The operating system releases the lock when the file is closed, or the process ends.
    """
    try:
        if sys.platform == "win32":
            import msvcrt

            msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
        else:
            import fcntl

            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:  # BlockingIOError on POSIX, PermissionError on Windows
        return False
    return True


def run_extract(args) -> int:
    """Extract features for every slide given; one summary line per slide."""
    slides = slide_list(args.slides)
    encoder = encoder_from_args(args)
    summaries = []
    with (
        extraction_lock(prepare_output_dir(args.out)),
        progress_reporter(args, "extract", "patches") as progress,
    ):
        for index, (name, path) in enumerate(slides, 1):
            progress.stage(f"extract {name} ({index}/{len(slides)})")
            summary = extract_slide(name, path, encoder, args, progress)
            summaries.append(summary)
            if not args.json:
                print(_summary_line(summary))
    if args.json:
        print(json.dumps(summaries, indent=2))
    return 0


def _summary_line(summary: dict) -> str:
    extra = (
        f" {summary['patches']} patches, {summary['patches_per_s']}/s on {summary['device']}"
        f", decoded by {summary['decode']}"
        if summary["status"] == "done"
        else ""
    )
    return f"{summary['slide']}: {summary['status']}{extra} -> {summary['features']}"
