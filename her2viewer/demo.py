"""The demo case used by ``make run``: a synthetic paired H&E/IHC case in the user cache."""

from __future__ import annotations

import json
from pathlib import Path

from her2viewer.paths import cache_dir
from her2viewer.slide.synthetic import CaseSpec, write_case

#: Bump when the synthetic generator changes what it draws.
DEMO_VERSION = 1
DEMO_SIZE = (12000, 9000)
DEMO_SEED = 2026
DEMO_SCORE = 2


def demo_case_dir() -> Path:
    """Return the demo case folder (it may not exist yet)."""
    return cache_dir() / f"demo-v{DEMO_VERSION}" / "demo"


def ensure_demo_case() -> Path:
    """Generate the demo case once into the user cache and return its folder.

    Returns
    -------
    Path
        Folder holding ``he.svs``, ``ihc.svs``, the truth masks and ``truth.json``.
    """
    case_dir = demo_case_dir()
    if not (case_dir / "truth.json").exists():
        spec = CaseSpec("demo", DEMO_SCORE, *DEMO_SIZE, seed=DEMO_SEED, index=0)
        write_case(spec, case_dir.parent)
    return case_dir


def load_truth(case_dir: Path) -> dict:
    """Read a synthetic case's ``truth.json``."""
    return json.loads((Path(case_dir) / "truth.json").read_text())
