"""Synthetic cases to measure the cell engine against: cells drawn one by one, classes known.

Each case is an IHC slide drawn cell by cell (:mod:`her2viewer.slide.cell_field`), the
class of every cell (``cells.csv``), and the category the guideline gives those true
classes (``truth.json``, from :mod:`her2viewer.cells.rules`). A cohort cycles through the
categories of its marker; for HER2 these are null, ultralow (faint incomplete staining in
more than 0 and at most 10 % of cells), 1+, 2+ and 3+. Each case draws its class mix
within its category's range, away from the guideline's boundaries, so that the category
is a property of the case and not of a borderline count.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from contextlib import nullcontext
from pathlib import Path

import numpy as np

from her2viewer.cells.engine import decide_counts
from her2viewer.errors import Her2ViewerError
from her2viewer.outputs import prepare_output_dir, write_text_atomic
from her2viewer.slide.cell_field import CellCaseSpec, write_cell_case
from her2viewer.slide.synthetic import SYNTHETIC_NOTICE
from her2viewer.tables import read_csv_rows, write_csv

#: Per marker and kind of case: ranges of the fraction of cells of class 1, 2, 3.
KINDS = {
    "her2": {
        "null": ((0, 0), (0, 0), (0, 0)),
        "ultralow": ((0.02, 0.07), (0, 0), (0, 0)),
        "1+": ((0.2, 0.6), (0, 0), (0, 0)),
        "2+": ((0.1, 0.3), (0.2, 0.5), (0, 0)),
        "3+": ((0.05, 0.15), (0.05, 0.15), (0.3, 0.7)),
    },
    "ki67": {
        "low": ((0.005, 0.015), (0.005, 0.015), (0.005, 0.015)),
        "intermediate": ((0.04, 0.08), (0.04, 0.08), (0.04, 0.08)),
        "high": ((0.12, 0.2), (0.12, 0.2), (0.12, 0.2)),
    },
    "er": {
        "negative": ((0, 0), (0, 0), (0, 0)),
        "low positive": ((0.01, 0.03), (0.01, 0.02), (0.01, 0.02)),
        "positive": ((0.1, 0.3), (0.1, 0.3), (0.1, 0.3)),
    },
    "pr": {
        "negative": ((0, 0), (0, 0), (0, 0)),
        "positive": ((0.1, 0.3), (0.1, 0.3), (0.1, 0.3)),
    },
}
#: Range of the cells' spacing per case (um): from sparse to crowded, nuclei touching.
CELL_DIAMETER_UM = (11.0, 15.0)
LABEL_COLUMNS = [
    "case_id", "ihc_path", "cells_path", "marker", "kind", "category", "label",
    "positive_percent", "n_cells",
]  # fmt: skip


class CellTruthError(Her2ViewerError):
    """A cell-truth case or cohort folder that cannot be read."""


def cell_case_specs(
    n_cases: int, marker: str, seed: int, width: int, height: int, mpp: float = 0.5
) -> list[tuple[str, CellCaseSpec]]:
    """The kind and specification of every case: kinds cycled, then shuffled.

    Returns
    -------
    list of (str, CellCaseSpec)
    """
    kinds = list(KINDS[marker])
    rng = np.random.default_rng([seed, 5])
    order = [kinds[i % len(kinds)] for i in range(n_cases)]
    rng.shuffle(order)
    out = []
    for index, kind in enumerate(order):
        case_rng = np.random.default_rng([seed, index, 23])
        stained = [case_rng.uniform(low, high) for low, high in KINDS[marker][kind]]
        fractions = (1.0 - sum(stained), *stained)
        case_seed = int(case_rng.integers(2**31))
        diameter = round(float(case_rng.uniform(*CELL_DIAMETER_UM)), 2)
        spec = CellCaseSpec(
            f"case{index:03d}", marker, fractions, width, height, case_seed, mpp,
            cell_diameter_um=diameter,
        )  # fmt: skip
        out.append((kind, spec))
    return out


def write_truth_case(kind: str, spec: CellCaseSpec, out_dir: Path) -> dict:
    """Write one case (slide, ``cells.csv``) and its ``truth.json``; return the truth."""
    _, written = write_cell_case(spec, out_dir)
    counts = written["class_counts"]
    decision = decide_counts(spec.marker, counts, written["n_cells"])
    truth = {
        "case_id": spec.case_id,
        "synthetic": True,
        "notice": SYNTHETIC_NOTICE,
        "marker": spec.marker,
        "kind": kind,
        "class_fractions": list(spec.class_fractions),
        "positive_percent": 100.0 * sum(counts[1:]) / max(1, written["n_cells"]),
        "decision": decision.to_dict(),
        "width": spec.width,
        "height": spec.height,
        "mpp": spec.mpp,
        "objective_power": spec.app_mag,
        "cell_diameter_um": spec.cell_diameter_um,
        "seed": spec.seed,
        **written,
    }
    write_text_atomic(Path(out_dir) / spec.case_id / "truth.json", json.dumps(truth, indent=2))
    return truth


def write_cell_cohort(
    out_dir: str | Path,
    n_cases: int = 5,
    marker: str = "her2",
    seed: int = 0,
    size: tuple[int, int] = (4000, 3000),
    workers: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Write a cohort of cell-truth cases and its ``labels.csv``.

    Parameters
    ----------
    out_dir : str or Path
        Destination folder (created; must be empty or new).
    n_cases : int
        Number of cases (the marker's kinds in turn).
    marker : {"her2", "ki67", "er", "pr"}
        What the slides are stained for.
    seed : int
        Seed; the same seed and size give the same cohort.
    size : (int, int)
        Level-0 ``(width, height)`` of every slide (0.5 um/px).
    workers : int
        Processes writing cases in parallel.
    progress : callable, optional
        ``progress(done, total)`` before the first case and after each one.

    Returns
    -------
    Path
        The path of ``labels.csv``.
    """
    out = prepare_output_dir(out_dir)
    planned = cell_case_specs(n_cases, marker, seed, *size)
    report = progress or (lambda done, total: None)
    report(0, len(planned))
    truths = []
    kinds, specs = zip(*planned, strict=True)
    parallel = workers > 1 and len(specs) > 1
    with ProcessPoolExecutor(workers) if parallel else nullcontext() as pool:
        for truth in (pool.map if pool else map)(write_truth_case, kinds, specs, [out] * n_cases):
            truths.append(truth)
            report(len(truths), len(specs))
    rows = [
        [
            t["case_id"], f"{t['case_id']}/{t['ihc_path']}", f"{t['case_id']}/{t['cells_path']}",
            t["marker"], t["kind"], t["decision"]["category"], t["decision"]["label"],
            round(t["positive_percent"], 3), t["n_cells"],
        ]
        for t in truths
    ]  # fmt: skip
    return write_csv(out / "labels.csv", LABEL_COLUMNS, rows)


def read_cell_truth(case_dir: str | Path) -> tuple[dict, np.ndarray, np.ndarray]:
    """A case's ``truth.json``, true centres ``(n, 2)`` (level-0 px) and classes.

    Raises
    ------
    CellTruthError
        When the case has no readable truth.
    """
    case_dir = Path(case_dir)
    try:
        truth = json.loads((case_dir / "truth.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CellTruthError(f"{case_dir} has no readable truth.json ({exc}).") from exc
    rows = read_csv_rows(case_dir / truth["cells_path"], ["x", "y", "class"], CellTruthError,
                         "Cell truth")  # fmt: skip
    xy = np.array([[float(r["x"]), float(r["y"])] for r in rows], np.float64).reshape(-1, 2)
    classes = np.array([int(r["class"]) for r in rows], np.int8)
    return truth, xy, classes
