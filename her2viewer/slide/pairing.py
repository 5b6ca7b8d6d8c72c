"""Find the paired IHC slide of an H&E slide: from a cohort CSV beside it, or by file name."""

from __future__ import annotations

import csv
import os
import re
from pathlib import Path

#: File-name tokens that mark an H&E slide, and the tokens its IHC partner may carry.
HE_TOKENS = ("he", "h&e", "hne", "hande")
IHC_TOKENS = ("ihc", "her2", "IHC", "HER2")
_SPLIT = re.compile(r"([_\-\s.]+)")


def _from_cohort_csv(path: Path) -> Path | None:
    for folder in (path.parent, path.parent.parent):
        for table in sorted(folder.glob("*.csv")):
            try:
                with table.open(newline="") as handle:
                    for row in csv.DictReader(handle):
                        he, ihc = row.get("he_path"), row.get("ihc_path")
                        if he and ihc and (folder / he).resolve() == path.resolve():
                            return folder / ihc
            except (OSError, UnicodeDecodeError, csv.Error):
                continue
    return None


def _from_file_name(path: Path) -> Path | None:
    parts = _SPLIT.split(path.stem)
    for index, part in enumerate(parts):
        if part.lower() not in HE_TOKENS:
            continue
        for token in IHC_TOKENS:
            stem = "".join(parts[:index] + [token] + parts[index + 1 :])
            for candidate in sorted(path.parent.glob(f"{stem}.*")):
                if candidate != path and candidate.is_file():
                    return candidate
    return None


def find_pair(path: str | os.PathLike) -> Path | None:
    """Return the IHC slide paired with an H&E slide, or None when there is none.

    A cohort CSV (columns ``he_path``, ``ihc_path``, paths relative to the CSV) in the
    slide's folder or its parent wins; otherwise a sibling whose name has the H&E
    token (``he``, ``h&e``, ``hne``, ``hande``) replaced by ``ihc`` or ``her2``
    (``case7_HE.svs`` -> ``case7_HER2.svs``).
    """
    path = Path(path)
    pair = _from_cohort_csv(path) or _from_file_name(path)
    return pair if pair is not None and pair.exists() else None
