"""Filling a project: slides and folders (paired by the pairing rules), cohort CSVs, relinking.

Every slide is opened once when it is added, for its fingerprint (the key of its annotations,
settings and features, and how a moved slide is found again by :func:`relink`).
"""

from __future__ import annotations

import re
from pathlib import Path

from her2viewer.errors import Her2ViewerError
from her2viewer.project.store import Case, Project, ProjectError
from her2viewer.slide import SUPPORTED_SUFFIXES, open_slide
from her2viewer.slide.pairing import HE_TOKENS, IHC_TOKENS, find_pair
from her2viewer.tables import read_csv_rows

#: The columns of a cohort CSV (``labels.csv``) that are not metadata.
CSV_COLUMNS = ("case_id", "he_path", "ihc_path", "patient_id")
_SPLIT = re.compile(r"[_\-\s.]+")


def fingerprint(path: str | Path) -> str:
    """The slide's content fingerprint (opening it: a damaged slide is a one-line error)."""
    with open_slide(path) as slide:
        return slide.info.fingerprint


def _role(path: Path) -> str:
    tokens = {t.lower() for t in _SPLIT.split(path.stem)}
    return "ihc" if tokens & {t.lower() for t in IHC_TOKENS} else "he"


def _case_id(path: Path) -> str:
    """``case7_HE.svs`` -> ``case7``; a file named only by its stain takes its folder's name."""
    marks = {t.lower() for t in HE_TOKENS + IHC_TOKENS}
    kept = [t for t in _SPLIT.split(path.stem) if t and t.lower() not in marks]
    return "_".join(kept) if kept else path.parent.name


def slide_files(paths: list[str | Path]) -> list[Path]:
    """The slides named, folders searched recursively for the supported suffixes."""
    found: list[Path] = []
    for item in map(Path, paths):
        if item.is_dir():
            found += sorted(
                p for p in item.rglob("*") if p.suffix.lower() in SUPPORTED_SUFFIXES
                and p.is_file() and "mask" not in p.stem.lower()
            )  # fmt: skip
        elif item.is_file():
            found.append(item)
        else:
            raise ProjectError(f"{item}: no such slide or folder.")
    return found


def pair_slides(files: list[Path]) -> list[Case]:
    """Group slides into cases: each H&E with its IHC partner (slide/pairing.py's rules).

    A slide without a partner makes a case of its own.
    """
    files = [f.resolve() for f in files]
    taken: set[Path] = set()
    cases: list[Case] = []
    for path in files:
        if path in taken or _role(path) != "he":
            continue
        partner = find_pair(path)
        partner = partner.resolve() if partner is not None else None
        taken |= {path, partner}
        cases.append(Case(_case_id(path), he=str(path), ihc=str(partner) if partner else None))
    for path in files:
        if path not in taken:
            cases.append(Case(_case_id(path), **{_role(path): str(path)}))
    return cases


def _with_fingerprints(case: Case) -> Case:
    for role in ("he", "ihc"):
        path = getattr(case, role)
        if path is not None:
            setattr(case, f"{role}_fingerprint", fingerprint(path))
    return case


def add_slides(project: Project, paths: list[str | Path]) -> list[Case]:
    """Add slides and folders of slides to ``project``, paired into cases; return the new cases.

    Raises
    ------
    ProjectError
        A path that does not exist, nothing to add, or a case id already in the project.
    SlideError
        A slide that cannot be opened.
    """
    cases = pair_slides(slide_files(paths))
    if not cases:
        raise ProjectError(f"No slides found in {', '.join(map(str, paths))}.")
    known = {c.case_id for c in project.cases()}
    for case in cases:
        if case.case_id in known:
            raise ProjectError(f"Case {case.case_id} is already in the project.")
        known.add(case.case_id)
    for case in cases:
        project.add_case(_with_fingerprints(case))
    return cases


def import_csv(project: Project, table: str | Path) -> list[Case]:
    """Add (or update) the cases of a cohort CSV (``labels.csv``'s layout).

    Columns ``case_id`` and ``he_path`` or ``ihc_path`` (paths relative to the CSV), optional
    ``patient_id``; every other column is metadata (``ihc_score``, ``her2_status``, ...).

    Raises
    ------
    ProjectError
        A missing column, an empty case id, or a slide path that does not exist.
    """
    table = Path(table)
    rows = read_csv_rows(table, ["case_id"], ProjectError, "Cohort CSV")
    cases = []
    for number, row in enumerate(rows, start=2):
        slides = {}
        for role in ("he", "ihc"):
            name = (row.get(f"{role}_path") or "").strip()
            if name:
                slides[role] = (table.parent / name).resolve()
                if not slides[role].is_file():
                    raise ProjectError(
                        f"{table.name} line {number}: {slides[role]} does not exist."
                    )
        if not slides or not row["case_id"].strip():
            raise ProjectError(f"{table.name} line {number} needs a case_id and a slide path.")
        metadata = {k: v for k, v in row.items() if k not in CSV_COLUMNS and k is not None}
        cases.append(
            Case(row["case_id"].strip(), **{r: str(p) for r, p in slides.items()},
                 patient_id=row.get("patient_id") or None, metadata=metadata)
        )  # fmt: skip
    for case in cases:
        project.add_case(_with_fingerprints(case), replace=True)
    return cases


def missing_slides(project: Project) -> list[tuple[str, str, str]]:
    """``(case_id, role, path)`` of every slide whose file is not where the project says."""
    return [
        (case.case_id, role, path)
        for case in project.cases()
        for role in ("he", "ihc")
        if (path := getattr(case, role)) is not None and not Path(path).is_file()
    ]


def relink(project: Project, folder: str | Path) -> dict[str, str]:
    """Find moved slides in ``folder`` (recursively) by fingerprint and store their new paths.

    Returns
    -------
    dict
        ``{old path: new path}`` of every slide found again.
    """
    lost = {}
    for case in project.cases():
        for role in ("he", "ihc"):
            path, print_id = case.slide(role)
            if path is not None and not Path(path).is_file():
                lost[print_id] = path
    moved: dict[str, str] = {}
    for candidate in slide_files([folder]) if lost else []:
        try:
            found = fingerprint(candidate)
        except Her2ViewerError:
            continue  # not a slide this project knows (or not a slide at all)
        if found in lost and found not in moved:
            project.set_slide_path(found, candidate)
            moved[found] = str(candidate.resolve())
    return {lost[f]: new for f, new in moved.items()}
