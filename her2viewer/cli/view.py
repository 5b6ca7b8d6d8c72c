"""The ``view`` verb: open the viewer, or render it offscreen to a PNG when there is no display."""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

from her2viewer.argtypes import bounded
from her2viewer.cli.options import size_type
from her2viewer.errors import Her2ViewerError, OutputError
from her2viewer.outputs import check_output_file, write_bytes_atomic
from her2viewer.registration.transform import Registration

#: Longest wait for a background analysis before the offscreen screenshot.
DEMO_ANALYSIS_TIMEOUT_S = 300
#: Longest wait for the visible tiles before the screenshot is taken as it is.
RENDER_TIMEOUT_S = 20.0
#: Smallest and largest window side (px): larger windows crash the offscreen renderer.
WINDOW_SIDES = (320, 16384)
#: Image formats of ``--screenshot``, by file suffix.
SCREENSHOT_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".bmp": "BMP"}


class ViewerError(Her2ViewerError):
    """The viewer cannot start with the given arguments."""


def register(subparsers) -> None:
    """Add the ``view`` verb."""
    view = subparsers.add_parser(
        "view", help="open slides in the viewer (offscreen PNG without a display)"
    )
    view.add_argument(
        "slide",
        nargs="?",
        help="slide to open (left pane); with nothing to open, the session saved when the "
        "viewer last closed comes back",
    )
    view.add_argument("paired", nargs="?", help="paired slide (right pane), e.g. the IHC")
    view.add_argument("--demo", action="store_true", help="open the synthetic demo case")
    view.add_argument(
        "--transform",
        help="registration JSON (3x3 'matrix', moving=PAIRED -> fixed=SLIDE level-0 px); "
        "without it the panes sync relatively",
    )
    view.add_argument("--geojson", action="append", default=[], help="GeoJSON layer (repeat)")
    view.add_argument(
        "--screenshot",
        help="render offscreen to this PNG (or .jpg, .bmp) and exit; without a display the "
        "render goes to ./view.png (./demo.png with --demo)",
    )
    view.add_argument(
        "--size",
        type=size_type("1600x1000", *WINDOW_SIDES),
        default=(1600, 1000),
        help=f"window size WxH, each side {WINDOW_SIDES[0]}-{WINDOW_SIDES[1]} (default 1600x1000)",
    )
    view.add_argument(
        "--magnification",
        type=bounded(float, 0.01, 400),
        help="zoom to this magnification (0.01-400)",
    )
    view.add_argument("--center", type=_point, help="centre the left pane on level-0 X,Y")
    view.add_argument(
        "--cache-mb",
        type=bounded(float, 16, 65536),
        default=512,
        help="tile cache size (MB, 16-65536; default 512)",
    )
    view.add_argument("--volume", help="CT/MR volume (NRRD, NIfTI or DICOM folder): Radiology tab")
    view.add_argument("--mask", help="ROI mask of --volume (outlined; needed to predict)")
    view.add_argument("--radiomics-model", help="model JSON from 'radiomics train' for --volume")
    view.add_argument(
        "--evaluation", help="predictions CSV or metrics.json of 'evaluate': Evaluation tab"
    )
    view.set_defaults(func=run_view)


def _point(text: str) -> tuple[float, float]:
    try:
        x, y = (float(v) for v in text.split(","))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"must look like 5000,4000, got {text!r}") from exc
    if not (math.isfinite(x) and math.isfinite(y)):
        raise argparse.ArgumentTypeError(f"must be two finite numbers, got {text!r}")
    return x, y


def _screenshot_path(args) -> Path:
    """Where the offscreen render goes, checked writable before anything is rendered."""
    out = check_output_file(args.screenshot or ("demo.png" if args.demo else "view.png"))
    if out.suffix.lower() not in SCREENSHOT_FORMATS:
        raise ViewerError(
            f"--screenshot {out} must end in {', '.join(SCREENSHOT_FORMATS)} to choose a format."
        )
    return out


def _check_slides(paths: list[str], center) -> None:
    """Open each slide and decode its thumbnail, so a damaged one is refused in one sentence.

    Raises
    ------
    SlideError
        When a slide cannot be opened or decoded.
    ViewerError
        When ``center`` lies outside the first slide.
    """
    from her2viewer.slide import open_slide

    infos = []
    for path in paths:
        with open_slide(path) as slide:
            slide.thumbnail(256)
            infos.append(slide.info)
    if center and infos:
        x, y = center
        first = infos[0]
        if not (0 <= x <= first.width and 0 <= y <= first.height):
            raise ViewerError(
                f"--center {x:g},{y:g} lies outside {Path(first.path).name} "
                f"({first.width} x {first.height} level-0 px)."
            )


def run_view(args) -> int:
    """Open the viewer; without a display (or with ``--screenshot``) save a PNG instead."""
    from her2viewer.gui.app import has_display, make_app
    from her2viewer.gui.mainwindow import MainWindow
    from her2viewer.gui.tiles import shared_loader
    from her2viewer.session import session_path

    nothing = not args.demo and not args.slide and not args.volume and not args.evaluation
    if nothing and not session_path().exists():
        raise ViewerError(
            "give a SLIDE, --volume or --evaluation, or --demo for the synthetic demo case"
            " (there is no saved session to restore)."
        )
    offscreen = bool(args.screenshot) or not has_display()
    out = _screenshot_path(args) if offscreen else None
    transform = Registration.load(args.transform).matrix if args.transform else None
    slides = _slide_paths(args)
    _check_slides(slides, args.center)
    start = time.perf_counter()
    app = make_app(offscreen)
    window = MainWindow(shared_loader(args.cache_mb))
    # The window records failed tile reads from the first tile on (a tile may fail before
    # the screenshot); a Python collector connected here could receive a queued signal after
    # it was freed, and crashed the process.
    failures = window.tile_failure_messages
    try:
        return _show(app, window, args, slides, out, transform, start, failures)
    finally:  # also on errors: a window left open would catch later windows' input
        window.close()
        window.deleteLater()


def _slide_paths(args) -> list[str]:
    """The slides to open: SLIDE and PAIRED, or SLIDE and the pair found beside it."""
    from her2viewer.slide.pairing import find_pair

    if args.demo or not args.slide:
        return []
    paired = args.paired or find_pair(args.slide)
    return [str(p) for p in (args.slide, paired) if p]


def _show(app, window, args, slides, out, transform, start, failures) -> int:
    """Attach the panels, open what ``args`` ask for, then run or render offscreen to ``out``.

    ``failures`` collects the tile reads that failed; any makes the screenshot an error.
    """
    from her2viewer.gui.app import demo_window, prepare_demo_case
    from her2viewer.gui.cells_panel import attach_cells_panel
    from her2viewer.gui.clam_panel import attach_clam_panel
    from her2viewer.gui.evaluation_panel import attach_evaluation_panel, show_evaluation_tab
    from her2viewer.gui.grading_panel import attach_grading_panel
    from her2viewer.gui.her2net_panel import attach_her2net_panel
    from her2viewer.gui.ihc_panel import attach_ihc_panel
    from her2viewer.gui.radiology_panel import attach_radiology_panel, show_radiology

    width, height = args.size
    her2net = attach_her2net_panel(window)
    ihc = attach_ihc_panel(window)
    attach_clam_panel(window)  # on demand: features on a CPU take minutes for a whole slide
    attach_grading_panel(window)  # on demand, like CLAM
    attach_cells_panel(window)  # on demand: the live preview follows its sliders
    radiology = attach_radiology_panel(window, args.radiomics_model)
    evaluation = attach_evaluation_panel(window)
    window.resize(width, height)
    window.show()
    window.sessions.autosave = out is None  # an offscreen render keeps the user's session
    summary = ""
    if args.demo:
        from her2viewer.demo import analyse_demo_case, format_summary

        case_dir = prepare_demo_case(window)  # a progress dialog, not a black window
        demo_window(window, case_dir)
        her2net.run()  # the demo's AI overlay: HER2Net's tumor and strong-expression layers
        ihc.run()  # registers the IHC automatically (replacing the known transform), scores it
    elif slides:
        if not window.open_slides(slides, transform).wait():
            raise ViewerError(window.errors[-1])
        if len(slides) > 1 and transform is None:
            ihc.run()  # a pair without a saved transform is registered in the background
    elif not args.volume and not args.evaluation:  # nothing asked: the last session
        restoring = window.sessions.restore()  # a slide gone since: said in the usual box
        if restoring is not None:
            restoring.wait()
    if args.volume:
        show_radiology(radiology)
        radiology.open_case(args.volume, args.mask)
    if args.evaluation:
        show_evaluation_tab(evaluation)
        evaluation.open_path(args.evaluation)
    for path in args.geojson:
        if not window.add_geojson(path, pane=0):  # --geojson is drawn on SLIDE, the left pane
            raise ViewerError(window.errors[-1])
    if args.magnification:
        window.views[0].set_magnification(args.magnification)
    if args.center:
        window.views[0].center_on(*args.center)
    if out is None:
        return app.exec()
    for panel in (her2net, ihc, radiology, evaluation):
        _wait_for(app, panel, DEMO_ANALYSIS_TIMEOUT_S)
    if args.volume and radiology.case is None:
        raise ViewerError(window.errors[-1])
    if args.evaluation and evaluation.result is None:
        raise ViewerError(window.errors[-1])
    _save_screenshot(window, out, failures)
    if args.demo:
        summary = format_summary(analyse_demo_case(case_dir))
        summary += f"\n  HER2Net (demo bundle): {her2net.status.text()}"
        summary += f"\n  IHC: {ihc.status.text()}"
    summary += f"\n  Radiology: {radiology.summary()}" if args.volume else ""
    summary += f"\n  Evaluation: {evaluation.summary()}" if args.evaluation else ""
    _print_summary(window, summary, out, time.perf_counter() - start)
    return 0


def _save_screenshot(window, out: Path, failures: list[str]) -> None:
    """Render the window once its tiles are drawn, encode it, and write it atomically to ``out``.

    Raises
    ------
    ViewerError
        When a tile of a slide could not be decoded (``failures``: the image would be
        partly blank).
    OutputError
        When the image cannot be written (full disk, no permission).
    """
    from her2viewer.gui.app import settle, window_image

    deadline = time.monotonic() + RENDER_TIMEOUT_S
    settled = False
    while not (settled or failures) and time.monotonic() < deadline:
        settled = settle(window, timeout=0.25)
    if failures:
        raise ViewerError(
            f"Part of the slide could not be read, so nothing was saved: {failures[0]}"
        )
    data = window_image(window, SCREENSHOT_FORMATS[out.suffix.lower()])
    if not data:
        raise OutputError(f"cannot write {out}: the image could not be encoded.")
    write_bytes_atomic(out, data)


def _wait_for(app, panel, timeout_s: float) -> None:
    """Process events until the panel's background analysis ends (offscreen rendering only)."""
    deadline = time.monotonic() + timeout_s
    while panel.job is not None and time.monotonic() < deadline:
        app.processEvents()
        time.sleep(0.05)
    app.processEvents()


def _print_summary(window, summary: str, out: Path, seconds: float) -> None:
    print(f"no display: rendered the viewer offscreen to {out.resolve()} in {seconds:.1f} s")
    for view in window.views:
        if view.slide is None:
            continue
        info = view.slide.info
        mag = view.magnification()
        print(
            f"  {view.title}: {info.width} x {info.height} px, {info.level_count} levels, "
            f"mpp {info.mpp_x or 'unknown'}, shown at {f'{mag:.2f}x' if mag else 'fit'}; "
            f"layers: {', '.join(layer.name for layer in view.layers) or 'none'}"
        )
    if summary:
        print(summary)
