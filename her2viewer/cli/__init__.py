"""The command line, ``her2viewer <verb>``; every verb runs headless.

:mod:`~her2viewer.cli.main` holds ``main`` (one line on stderr and exit status 2 for
every user error), :mod:`~her2viewer.cli.options` the options shared by the verbs,
and each other module one verb group with a ``register(subparsers)`` function.
Verb modules import the rooms, never each other; no room imports this package.
"""

from her2viewer.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
