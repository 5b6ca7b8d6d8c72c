"""The shape every analysis shares: ``analyse_<name>(slide, bundle, options, context)``.

Each analysis module defines one module-level contract function that takes an open
:class:`~her2viewer.slide.Slide`, a model bundle (or None), a small frozen options
dataclass (or None) and a :class:`~her2viewer.jobs.JobContext` (or None), and returns a
result with ``layers()``, ``summary()`` (JSON-able) and ``save(path)`` / ``load(path)``.
:func:`analyse_path` runs one on a slide path, so the GUI can submit
``functools.partial(analyse_path, analyse_x, path, bundle, options)`` as a job that
pickles (``Job(fn, process=True)``). Results with arrays save to one ``.npz`` file
through :func:`save_npz` / :func:`load_npz`.

Every slide analysis takes an optional ``region`` in its options (a
:class:`~her2viewer.annotations.roi.Region`: annotations minus Ignore*, level-0 pixels) and
then looks only inside it; its ``summary()`` says which region it covers (``region``, None
for the whole slide) and the region's area (``region_area_um2`` or ``region_area_px2``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from her2viewer.errors import ModelError
from her2viewer.jobs import JobContext
from her2viewer.outputs import atomic_output
from her2viewer.slide import open_slide

#: The key of the JSON summary inside a result's ``.npz`` file.
SUMMARY_KEY = "summary_json"


def analyse_path(
    analyse: Callable, slide_path: str | Path, bundle, options, context: JobContext | None
):
    """Open ``slide_path`` and run ``analyse(slide, bundle, options, context)`` on it.

    Parameters
    ----------
    analyse : callable
        A module-level contract function (so a partial of this one pickles).
    slide_path : path
        The slide to open (closed again when the analysis returns).
    bundle, options, context
        Passed on unchanged.
    """
    with open_slide(slide_path) as slide:
        return analyse(slide, bundle, options, context)


def save_npz(path: str | Path, summary: dict, **arrays: np.ndarray) -> Path:
    """Write ``summary`` (JSON) and ``arrays`` to one ``.npz`` file, atomically.

    Raises
    ------
    OutputError
        One sentence naming the file when it cannot be written (nothing is left).
    """
    with atomic_output(path) as tmp, open(tmp, "wb") as handle:
        np.savez_compressed(handle, **{SUMMARY_KEY: np.array(json.dumps(summary))}, **arrays)
    return Path(path)


def load_npz(path: str | Path, what: str) -> tuple[dict, dict[str, Any]]:
    """Read a file written by :func:`save_npz`: ``(summary, arrays)``.

    Raises
    ------
    ModelError
        One sentence naming the file and ``what`` it should hold when it is missing
        or unreadable.
    """
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
        summary = json.loads(str(arrays.pop(SUMMARY_KEY)))
    except (OSError, ValueError, KeyError) as exc:
        raise ModelError(f"No readable {what} result in {path}.") from exc
    return summary, arrays
