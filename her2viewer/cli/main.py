"""``main``: assemble the verbs, parse, run, and turn user errors into one line + exit 2.

This is the only place that catches :class:`~her2viewer.errors.Her2ViewerError`.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import NoReturn

from her2viewer import __version__
from her2viewer.errors import Her2ViewerError

#: Modules that add verbs (each has ``register(subparsers)``), one per verb group, in the
#: order of ``--help``: the pipeline from slide to model, then studies, evaluation and viewing.
VERB_MODULES = tuple(
    f"her2viewer.cli.{name}"
    for name in (
        "slide",
        "tissue",
        "extract",
        "encoders",
        "embed",
        "clam",
        "her2net",
        "ihc",
        "cells",
        "grade",
        "register",
        "annotations",
        "radiomics",
        "study",
        "project",
        "evaluate",
        "view",
        "demo",
        "export",
    )
)

EXIT_USER_ERROR = 2


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose refusals are one line, like every other user error.

    argparse prints the whole usage block before its message; a bad option is
    reported here as one sentence naming the command and pointing at ``--help``,
    with exit status 2 as before. Sub-command parsers inherit the class.
    """

    def error(self, message: str) -> NoReturn:
        """Print ``message`` on one line to stderr and exit with status 2."""
        text = " ".join(message.split())
        self.exit(EXIT_USER_ERROR, f"{self.prog}: error: {text} (see '{self.prog} --help').\n")


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser with every verb registered."""
    parser = OneLineParser(
        prog="her2viewer",
        description="Whole-slide viewer and headless analysis for HER2 pathology.",
    )
    parser.add_argument("--version", action="version", version=f"her2viewer {__version__}")
    subparsers = parser.add_subparsers(dest="verb", metavar="VERB")
    subparsers.required = True
    for name in VERB_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return the exit status.

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments without the program name; ``sys.argv[1:]`` when omitted.
    """
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except Her2ViewerError as exc:
        print(f"her2viewer: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("her2viewer: cancelled", file=sys.stderr)
        return 130
