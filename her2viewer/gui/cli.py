"""The ``view`` verb: open the viewer, or render it offscreen to a PNG when there is no display."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from her2viewer.errors import Her2ViewerError
from her2viewer.registration.transform import Registration

#: Longest wait for a background analysis before the offscreen screenshot.
DEMO_ANALYSIS_TIMEOUT_S = 300


class ViewerError(Her2ViewerError):
    """The viewer cannot start with the given arguments."""


def register(subparsers) -> None:
    """Add the ``view`` verb."""
    view = subparsers.add_parser(
        "view", help="open slides in the viewer (offscreen PNG without a display)"
    )
    view.add_argument("slide", nargs="?", help="slide to open (left pane)")
    view.add_argument("paired", nargs="?", help="paired slide (right pane), e.g. the IHC")
    view.add_argument("--demo", action="store_true", help="open the synthetic demo case")
    view.add_argument(
        "--transform",
        help="registration JSON (3x3 'matrix', moving=PAIRED -> fixed=SLIDE level-0 px); "
        "without it the panes sync relatively",
    )
    view.add_argument("--geojson", action="append", default=[], help="GeoJSON layer (repeat)")
    view.add_argument("--screenshot", help="render offscreen to this PNG and exit")
    view.add_argument("--size", default="1600x1000", help="window size WxH (default 1600x1000)")
    view.add_argument("--magnification", type=float, help="zoom to this magnification")
    view.add_argument("--center", type=_point, help="centre the left pane on level-0 X,Y")
    view.add_argument("--cache-mb", type=float, default=512, help="tile cache size (MB)")
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
        raise argparse.ArgumentTypeError(
            f"--center must look like 5000,4000, got {text!r}"
        ) from exc
    return x, y


def _size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError as exc:
        raise ViewerError(f"--size must look like 1600x1000, got {text!r}") from exc
    return width, height


def run_view(args) -> int:
    """Open the viewer; without a display (or with ``--screenshot``) save a PNG instead."""
    from her2viewer.gui.app import has_display, make_app
    from her2viewer.gui.mainwindow import MainWindow
    from her2viewer.gui.tiles import shared_loader

    if not args.demo and not args.slide and not args.volume and not args.evaluation:
        raise ViewerError(
            "give a SLIDE, --volume or --evaluation, or --demo for the synthetic demo case."
        )
    offscreen = bool(args.screenshot) or not has_display()
    _size(args.size)  # checked before any window opens
    transform = Registration.load(args.transform).matrix if args.transform else None
    start = time.perf_counter()
    app = make_app(offscreen)
    window = MainWindow(shared_loader(args.cache_mb))
    try:
        return _show(app, window, args, offscreen, transform, start)
    finally:  # also on errors: a window left open would catch later windows' input
        window.close()
        window.deleteLater()


def _show(app, window, args, offscreen: bool, transform, start: float) -> int:
    """Attach the panels, open what ``args`` ask for, then run or render offscreen."""
    from her2viewer.gui.app import demo_window, prepare_demo_case, screenshot
    from her2viewer.gui.clam_panel import attach_clam_panel
    from her2viewer.gui.evaluation_panel import attach_evaluation_panel, show_evaluation_tab
    from her2viewer.gui.grading_panel import attach_grading_panel
    from her2viewer.gui.her2net_panel import attach_her2net_panel
    from her2viewer.gui.ihc_panel import attach_ihc_panel
    from her2viewer.gui.radiology_panel import attach_radiology_panel, show_radiology
    from her2viewer.slide.pairing import find_pair

    width, height = _size(args.size)
    her2net = attach_her2net_panel(window)
    ihc = attach_ihc_panel(window)
    attach_clam_panel(window)  # on demand: features on a CPU take minutes for a whole slide
    attach_grading_panel(window)  # on demand, like CLAM
    radiology = attach_radiology_panel(window, args.radiomics_model)
    evaluation = attach_evaluation_panel(window)
    window.resize(width, height)
    window.show()
    summary = ""
    if args.demo:
        from her2viewer.demo import analyse_demo_case, format_summary

        case_dir = prepare_demo_case(window)  # a progress dialog, not a black window
        demo_window(window, case_dir)
        her2net.run()  # the demo's AI overlay: HER2Net's tumor and strong-expression layers
        ihc.run()  # registers the IHC automatically (replacing the known transform), scores it
    elif args.slide:
        paired = args.paired or find_pair(args.slide)
        if not window.open_slides([p for p in (args.slide, paired) if p], transform):
            raise ViewerError(window.errors[-1])
        if paired and transform is None:
            ihc.run()  # a pair without a saved transform is registered in the background
    if args.volume:
        show_radiology(radiology)
        radiology.open_case(args.volume, args.mask)
    if args.evaluation:
        show_evaluation_tab(evaluation)
        evaluation.open_path(args.evaluation)
    for path in args.geojson:
        if not window.add_geojson(path):
            raise ViewerError(window.errors[-1])
    if args.magnification:
        window.views[0].set_magnification(args.magnification)
    if args.center:
        window.views[0].center_on(*args.center)
    if not offscreen:
        return app.exec()
    out = Path(args.screenshot or ("demo.png" if args.demo else "view.png"))
    for panel in (her2net, ihc, radiology, evaluation):
        _wait_for(app, panel, DEMO_ANALYSIS_TIMEOUT_S)
    if args.volume and radiology.case is None:
        raise ViewerError(window.errors[-1])
    if args.evaluation and evaluation.result is None:
        raise ViewerError(window.errors[-1])
    screenshot(window, out)
    if args.demo:
        summary = format_summary(analyse_demo_case(case_dir))
        summary += f"\n  HER2Net (demo bundle): {her2net.status.text()}"
        summary += f"\n  IHC: {ihc.status.text()}"
    summary += f"\n  Radiology: {radiology.summary()}" if args.volume else ""
    summary += f"\n  Evaluation: {evaluation.summary()}" if args.evaluation else ""
    _print_summary(window, summary, out, time.perf_counter() - start)
    return 0


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
