"""Each case's IHC -> H&E registration, computed once when a study is created.

The reading window then moves the IHC pane through the stored matrix (and draws
the linked cursor there), as the main viewer does after ``her2viewer register``;
a case whose slides cannot be registered is read with relative sync.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from her2viewer.errors import Her2ViewerError
from her2viewer.registration.core import register_slides
from her2viewer.slide import open_slide
from her2viewer.study.definition import CaseRow
from her2viewer.study.store import CaseRegistration


def register_cases(
    cases: list[CaseRow], progress: Callable[[int, int], None] | None = None
) -> tuple[dict[str, CaseRegistration], dict[str, str]]:
    """Register the IHC slide of every case that has both slides onto its H&E slide.

    Parameters
    ----------
    cases : list of CaseRow
        The study's cases; those without both slide files are skipped.
    progress : callable, optional
        ``progress(done, total)`` after each case.

    Returns
    -------
    registrations : dict
        case_id -> :class:`~her2viewer.study.store.CaseRegistration`.
    failures : dict
        case_id -> the one-sentence reason a pair could not be opened or registered.
    """
    registrations, failures = {}, {}
    for i, case in enumerate(cases):
        paths = (Path(case.he_path), Path(case.ihc_path)) if case.ihc_path else ()
        if paths and all(p.is_file() for p in paths):
            try:
                with open_slide(paths[0]) as he, open_slide(paths[1]) as ihc:
                    found = register_slides(he, ihc)
            except Her2ViewerError as exc:
                failures[case.case_id] = str(exc)
            else:
                registrations[case.case_id] = CaseRegistration(
                    found.matrix, found.method, found.error_px
                )
        if progress is not None:
            progress(i + 1, len(cases))
    return registrations, failures
