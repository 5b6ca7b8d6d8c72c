"""Verb ``register``: automatic H&E <-> IHC registration to a transform JSON."""

from __future__ import annotations

import json
import time

from her2viewer.cli.options import add_json_option, add_output_option, add_progress_options
from her2viewer.cli.progress import progress_reporter
from her2viewer.errors import RegistrationError
from her2viewer.outputs import check_output_file
from her2viewer.registration.core import register_slides
from her2viewer.slide import open_slide


def register(subparsers) -> None:
    """Add the ``register`` verb."""
    parser = subparsers.add_parser(
        "register",
        help="register an IHC slide onto its H&E slide (level-0 affine)",
        description="Register an IHC slide onto its H&E slide. Exit status 0 when the "
        "transform was written, 2 (with one line on stderr, nothing written) when the "
        "slides, the output or the registration itself fail.",
    )
    parser.add_argument("fixed", help="fixed slide (H&E)")
    parser.add_argument("moving", help="moving slide (IHC)")
    add_output_option(parser, "transform JSON to write (replaced if it exists)", required=True)
    add_json_option(parser, "the transform")
    add_progress_options(parser)
    parser.set_defaults(func=run_register)


def run_register(args) -> int:
    """Register, write the JSON and print a summary; exit 2 when registration fails."""
    start = time.perf_counter()
    check_output_file(args.out)  # before minutes of work
    with (
        open_slide(args.fixed) as fixed,
        open_slide(args.moving) as moving,
        progress_reporter(args, "register", "steps") as progress,
    ):
        try:
            result = register_slides(fixed, moving, progress.context())
        except RegistrationError as exc:
            raise RegistrationError(f"registration failed: {exc}") from exc
    result.save(args.out)
    if args.json:
        print(json.dumps(result.to_json_dict(), indent=2))
    else:
        print(
            f"registered in {time.perf_counter() - start:.1f} s: error {result.error_px:.1f} "
            f"level-0 px, tissue overlap {result.quality['dice']:.2f}; wrote {args.out}"
        )
    return 0
