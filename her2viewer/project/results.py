"""What a project holds: its status, the results table (CSV or Parquet) and stale artefacts."""

from __future__ import annotations

import shutil
from pathlib import Path

from her2viewer.outputs import atomic_output, check_output_file
from her2viewer.project.cohort import missing_slides
from her2viewer.project.store import Project, ProjectError
from her2viewer.project.tasks import ANALYSES
from her2viewer.tables import write_csv

#: The table formats of :func:`export_results`, by suffix.
EXPORT_SUFFIXES = (".csv", ".parquet")


def status(project: Project) -> dict:
    """The project at a glance (what ``project status --json`` prints).

    Returns
    -------
    dict
        ``cases``, ``slides_missing`` (``[case, role, path]``), and per analysis the counts
        of ``done`` and ``failed`` results with the failures' errors.
    """
    cases = project.cases()
    analyses: dict[str, dict] = {n: {"done": 0, "failed": 0, "errors": {}} for n in ANALYSES}
    for row in project.results():
        entry = analyses.setdefault(row.analysis, {"done": 0, "failed": 0, "errors": {}})
        entry[row.status] += 1
        if row.error:
            entry["errors"][row.case_id] = row.error
    return {
        "project": str(project.folder),
        "cases": len(cases),
        "slides": sum((c.he is not None) + (c.ihc is not None) for c in cases),
        "slides_missing": [list(m) for m in missing_slides(project)],
        "analyses": analyses,
    }


def _flatten(prefix: str, value, out: dict) -> None:
    """Scalar figures of a summary as ``analysis.key.subkey`` columns (lists are left out)."""
    if isinstance(value, dict):
        for key, item in value.items():
            _flatten(f"{prefix}.{key}", item, out)
    elif value is None or isinstance(value, bool | int | float | str):
        out[prefix] = value


def results_table(project: Project) -> tuple[list[str], list[list]]:
    """One row per case, one column per figure: ``(header, rows)``.

    Columns: ``case_id``, ``patient_id``, the metadata columns, then ``<analysis>.status``
    and every scalar of each finished analysis' summary (``ihc.score``, ``clam.probabilities
    .positive``...). A figure a case lacks is empty.
    """
    records: dict[str, dict] = {}
    for case in project.cases():
        records[case.case_id] = {"case_id": case.case_id, "patient_id": case.patient_id}
        records[case.case_id].update(case.metadata)
    for row in project.results():
        record = records[row.case_id]
        record[f"{row.analysis}.status"] = row.status
        if row.status == "done":
            _flatten(row.analysis, row.summary, record)
    header: list[str] = []
    for record in records.values():
        header += [key for key in record if key not in header]
    return header, [[record.get(key) for key in header] for record in records.values()]


def export_results(project: Project, out: str | Path) -> Path:
    """Write :func:`results_table` as CSV (formula-escaped) or Parquet, by ``out``'s suffix.

    Raises
    ------
    ProjectError
        Another suffix, or Parquet without pyarrow.
    OutputError
        The file cannot be written (nothing is left).
    """
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in EXPORT_SUFFIXES:
        raise ProjectError(f"{out.name}: export to a .csv or .parquet file.")
    header, rows = results_table(project)
    if suffix == ".csv":
        return write_csv(out, header, rows)
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise ProjectError(f"{out.name}: Parquet needs pyarrow (pip install pyarrow).") from exc
    columns = {key: _parquet_column(pa, [row[i] for row in rows]) for i, key in enumerate(header)}
    check_output_file(out)
    with atomic_output(out) as tmp:
        pq.write_table(pa.table(columns), tmp)
    return out


def _parquet_column(pa, values: list):
    """A Parquet column; one mixing numbers and text (across cases) is stored as text."""
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.array([None if v is None else str(v) for v in values])


def stale_artefacts(project: Project) -> list[Path]:
    """Files and folders under ``artefacts/`` and ``features/`` no stored result refers to.

    Those are left by results replaced since (new bundle or version), cases removed, or
    temporary files of a killed run.
    """
    kept = {project.resolve(a) for row in project.results() for a in row.artefacts}
    stale = []
    for top in ("artefacts", "features"):
        root = project.folder / top
        for path in sorted(root.rglob("*")) if root.is_dir() else []:
            if path in kept or any(parent in kept for parent in path.parents):
                continue
            if path.is_file() or (path.is_dir() and not _holds(path, kept)):
                stale.append(path)
    return [p for p in stale if not any(parent in stale for parent in p.parents)]


def _holds(folder: Path, kept: set[Path]) -> bool:
    return any(folder in path.parents for path in kept)


def collect_garbage(project: Project) -> tuple[list[Path], int]:
    """Delete :func:`stale_artefacts` (never during a run); return them and the bytes freed."""
    with project.exclusive():
        stale = stale_artefacts(project)
        freed = 0
        for path in stale:
            files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
            freed += sum(p.stat().st_size for p in files)
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()
    return stale, freed
