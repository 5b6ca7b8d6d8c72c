"""Every verb's --help renders (argparse formats help strings lazily, so typos hide)."""

from __future__ import annotations

import argparse

import pytest

from her2viewer.cli import build_parser


def _subparsers(parser: argparse.ArgumentParser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield name, sub
                yield from ((f"{name} {n}", s) for n, s in _subparsers(sub))


def test_every_help_text_formats():
    parser = build_parser()
    assert parser.format_help()
    names = []
    for name, sub in _subparsers(parser):
        assert sub.format_help(), name
        names.append(name)
    for verb in ("info", "demo-data", "segment", "patch", "view", "evaluate", "study", "clam"):
        assert verb in names


def test_main_help_exits_0(capsys):
    from her2viewer.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    assert "evaluate" in capsys.readouterr().out
