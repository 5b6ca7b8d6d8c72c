"""Verbs ``segment`` (tissue mask PNG + GeoJSON) and ``patch`` (CLAM coords h5)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from her2viewer.analysis.ihc import NOT_EVALUABLE
from her2viewer.argtypes import bounded
from her2viewer.cli.options import add_json_option, add_output_option, add_patch_grid_options
from her2viewer.outputs import check_output_file, prepare_output_dir
from her2viewer.overlay.export import write_image
from her2viewer.slide import open_slide
from her2viewer.tissue.geojson import segmentation_to_geojson, write_geojson
from her2viewer.tissue.patching import (
    CONTOUR_FUNCTIONS,
    MAX_BACKGROUND,
    MAX_PATCH_SIZE,
    make_patch_grid,
    write_coords_h5,
)
from her2viewer.tissue.segmentation import PRESETS, resolve_params, segment_tissue


def _add_segmentation_options(parser) -> None:
    parser.add_argument("--preset", choices=sorted(PRESETS), default="default")
    parser.add_argument(
        "--sthresh", type=bounded(int, 0, 255), help="saturation threshold (overrides preset)"
    )
    parser.add_argument("--otsu", action="store_true", default=None, help="Otsu threshold")
    parser.add_argument(
        "--seg-level", type=bounded(int, -1, 64), help="level to segment (-1: downsample ~64)"
    )


def register(subparsers) -> None:
    """Add the ``segment`` and ``patch`` verbs."""
    segment = subparsers.add_parser("segment", help="find tissue: mask PNG + GeoJSON contours")
    segment.add_argument("slide")
    add_output_option(segment, "output folder", required=True)
    add_json_option(segment, "the summary")
    _add_segmentation_options(segment)
    segment.set_defaults(func=run_segment)

    patch = subparsers.add_parser("patch", help="patch grid over tissue -> CLAM coords h5")
    patch.add_argument("slide")
    add_output_option(patch, "coords .h5 file", required=True)
    add_patch_grid_options(patch, "--size")
    patch.add_argument(
        "--step", type=bounded(int, 1, MAX_PATCH_SIZE), help="grid step in px (default: --size)"
    )
    patch.add_argument("--contour-fn", choices=CONTOUR_FUNCTIONS, default="four_pt")
    patch.add_argument(
        "--max-background",
        type=bounded(float, 0.0, 1.0),
        default=MAX_BACKGROUND,
        help=f"drop patches whiter than this ({MAX_BACKGROUND:g})",
    )
    add_json_option(patch, "the summary")
    _add_segmentation_options(patch)
    patch.set_defaults(func=run_patch)


def _params(args):
    return resolve_params(
        args.preset, sthresh=args.sthresh, use_otsu=args.otsu, seg_level=args.seg_level
    )


def _status(name: str, seg, patches: int | None = None) -> dict:
    """``status`` and ``reason`` of a summary: not evaluable when there is nothing to patch.

    Parameters
    ----------
    name : str
        The slide's file name, for the reason.
    seg : TissueSegmentation
        The segmentation.
    patches : int, optional
        How many patches the grid holds (``patch`` only).
    """
    if not seg.contours:
        return {"status": NOT_EVALUABLE, "reason": f"no tissue was found in {name}"}
    if patches == 0:
        return {
            "status": NOT_EVALUABLE,
            "reason": f"no patch of the tissue of {name} passed the background filter "
            "(raise --max-background or lower --size)",
        }
    return {"status": "ok", "reason": None}


def _print(summary: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(summary, indent=2))
        return
    for key, value in summary.items():
        print(f"{key}: {value}")


def run_segment(args) -> int:
    """Segment a slide and write ``<stem>_tissue_mask.png`` and ``<stem>_tissue.geojson``.

    With no tissue found, the (empty) mask is still written and the summary says the
    slide is not evaluable.
    """
    out = prepare_output_dir(args.out)
    start = time.perf_counter()
    with open_slide(args.slide) as slide:
        seg = segment_tissue(slide, _params(args))
        stem = Path(slide.info.path).stem
        mask_path = write_image(out / f"{stem}_tissue_mask.png", seg.mask.astype("uint8") * 255)
        geojson_path = write_geojson(out / f"{stem}_tissue.geojson", segmentation_to_geojson(seg))
        summary = {
            "slide": slide.info.path,
            **_status(Path(slide.info.path).name, seg),
            "contours": len(seg.contours),
            "holes": sum(len(h) for h in seg.holes),
            "tissue_fraction": round(float(seg.mask.mean()), 4),
            "mask": str(mask_path),
            "mask_downsample": seg.downsample,
            "geojson": str(geojson_path),
            "seconds": round(time.perf_counter() - start, 3),
            "warnings": seg.warnings,
        }
    _print(summary, args.json)
    return 0


def run_patch(args) -> int:
    """Segment a slide, lay the patch grid and write the coords h5.

    A slide with no patch (no tissue, or all of it background) is not evaluable: the
    summary says why and no coords file is written.
    """
    check_output_file(args.out)
    start = time.perf_counter()
    with open_slide(args.slide) as slide:
        seg = segment_tissue(slide, _params(args))
        grid = make_patch_grid(
            slide, seg, args.mag, args.size, args.step, args.contour_fn, args.max_background
        )
        status = _status(Path(slide.info.path).name, seg, len(grid))
        path = write_coords_h5(args.out, grid) if len(grid) else None
        summary = {
            "slide": slide.info.path,
            **status,
            "patches": len(grid),
            "magnification": grid.magnification,
            "patch_size": grid.target_size,
            "patch_level": grid.patch_level,
            "patch_size_level0": grid.patch_size_level0,
            "coords": str(path) if path else None,
            "seconds": round(time.perf_counter() - start, 3),
            "warnings": grid.warnings,
        }
    _print(summary, args.json)
    return 0
