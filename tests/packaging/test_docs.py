"""The user guide: mkdocs --strict builds it, its images exist and are small, its commands exist."""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "her2viewer" / "guide"
#: Markdown image references: ![alt](path).
IMAGE = re.compile(r"!\[[^\]]*\]\(([^)\s]+)\)")
#: Most bytes the guide's screenshots may take together.
MAX_IMAGE_BYTES = 600_000


def _pages() -> list[Path]:
    return sorted(DOCS.rglob("*.md"))


def _commands() -> list[list[str]]:
    """Every ``her2viewer ...`` line of the guide's code blocks, continuations joined."""
    commands = []
    for page in _pages():
        blocks = re.findall(r"```[a-z]*\n(.*?)```", page.read_text(encoding="utf-8"), re.S)
        text = "\n".join(blocks).replace("\\\n", " ")
        for line in text.splitlines():
            line = line.split("#", 1)[0].strip()
            if line.startswith("her2viewer "):
                commands.append(shlex.split(line)[1:])
    return commands


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices
    return {}


def test_mkdocs_build_strict_has_no_broken_links(tmp_path):
    pytest.importorskip("mkdocs")
    pytest.importorskip("material")
    site = tmp_path / "site"
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},  # the theme's banner about MkDocs 2
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (site / "index.html").is_file()
    assert (site / "pathologist" / "index.html").is_file()
    assert not (site / "screenshots.py").exists()


def test_every_image_the_pages_show_exists_and_is_small():
    shown = set()
    for page in _pages():
        for ref in IMAGE.findall(page.read_text(encoding="utf-8")):
            image = (page.parent / ref).resolve()
            assert image.is_file(), f"{page.name} shows a missing image {ref}"
            shown.add(image)
    assert shown, "the guide shows no screenshot"
    stored = set((DOCS / "img").glob("*.png"))
    assert stored <= shown, f"images no page shows: {sorted(p.name for p in stored - shown)}"
    assert sum(image.stat().st_size for image in shown) <= MAX_IMAGE_BYTES


def test_guides_cover_the_topics():
    pathologist = (DOCS / "pathologist.md").read_text(encoding="utf-8")
    for heading in (
        "Open slides",
        "Pair H&E with IHC",
        "Layers",
        "IHC score",
        "HER2Net",
        "CLAM heatmap",
        "Reader study",
    ):
        assert f"\n## {heading}\n" in pathologist
    researcher = (DOCS / "researcher.md").read_text(encoding="utf-8")
    for heading in ("Tissue and patching", "Feature extraction", "Training", "Evaluation"):
        assert f"\n## {heading}\n" in researcher
    assert (DOCS / "formats.md").is_file()


def test_every_command_in_the_guide_is_a_real_verb_with_real_options():
    from her2viewer.cli import build_parser

    commands = _commands()
    assert len(commands) > 20
    for args in commands:
        parser = build_parser()
        words = [arg for arg in args if not arg.startswith("-")]
        while words and words[0] in _subparsers(parser):
            parser = _subparsers(parser)[words.pop(0)]
        known = {opt for action in parser._actions for opt in action.option_strings}
        options = {arg.split("=", 1)[0] for arg in args if arg.startswith("-")}
        assert options <= known, f"her2viewer {' '.join(args)}: unknown {options - known}"
        if _subparsers(parser) and not options & {"--version", "--help"}:
            pytest.fail(f"her2viewer {' '.join(args)} names no action of {parser.prog}")
