"""CSV tables given by users (cohort labels, tile labels), read with one set of checks."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

from her2viewer.errors import Her2ViewerError


def read_csv_rows(
    path: str | Path,
    required: Sequence[str],
    error: type[Her2ViewerError] = Her2ViewerError,
    what: str = "Table",
) -> list[dict[str, str]]:
    """Read a CSV file with a header into a list of row dictionaries.

    Parameters
    ----------
    path : str or Path
        The CSV file.
    required : sequence of str
        Columns that must be present.
    error : type
        The project's exception raised for user errors (for example ``ModelError``).
    what : str
        What the file is, for the messages (``"Labels file"``).

    Returns
    -------
    list of dict
        One dictionary per row.

    Raises
    ------
    Her2ViewerError
        (as ``error``) when the file is missing, empty, or lacks a required column.
    """
    path = Path(path)
    if not path.is_file():
        raise error(f"{what} not found: {path}")
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    missing = [c for c in required if not rows or c not in rows[0]]
    if missing:
        raise error(
            f"{path.name} needs the columns {', '.join(required)}; "
            f"'{missing[0]}' is missing (or the file has no rows)."
        )
    return rows
