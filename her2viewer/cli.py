"""One command line, ``her2viewer <verb>``; every verb runs headless.

Each room of the package owns its verbs in a ``cli`` module with a
``register(subparsers)`` function; this file only assembles them and turns the
project's own errors into one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import NoReturn

from her2viewer import __version__
from her2viewer.errors import Her2ViewerError

#: Modules that add verbs, in the order they appear in ``--help``.
VERB_MODULES = (
    "her2viewer.slide.cli",
    "her2viewer.tissue.cli",
    "her2viewer.stain.cli",
    "her2viewer.registration.cli",
    "her2viewer.features.cli",
    "her2viewer.models.cli",
    "her2viewer.demo",
    "her2viewer.study.cli",
    "her2viewer.gui.cli",
    "her2viewer.models.patchcnn_cli",
    "her2viewer.models.her2net.cli",
    "her2viewer.radiomics.cli",
    "her2viewer.training.cli",
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


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
