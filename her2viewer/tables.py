"""CSV tables: those given by users read with one set of checks, and every CSV the project
writes, escaped against formula injection and written atomically."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from pathlib import Path

from her2viewer.errors import Her2ViewerError
from her2viewer.outputs import write_text_atomic

#: First characters a spreadsheet reads as the start of a formula (OWASP, "CSV Injection").
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


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
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.DictReader(handle))
    except UnicodeDecodeError as exc:
        raise error(f"{what} {path} is not a UTF-8 text CSV file.") from exc
    except (OSError, csv.Error) as exc:
        raise error(f"{what} {path} cannot be read: {exc}.") from exc
    missing = [c for c in required if not rows or c not in rows[0]]
    if missing:
        raise error(
            f"{path.name} needs the columns {', '.join(required)}; "
            f"'{missing[0]}' is missing (or the file has no rows)."
        )
    return rows


def safe_cell(value: object) -> object:
    """Return ``value`` made inert for spreadsheets.

    Text starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return
    gets a leading apostrophe, as OWASP's "CSV Injection" page recommends, so
    that Excel or LibreOffice shows it as text instead of running it as a
    formula. Numbers (including negative ones) are left as numbers.
    """
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def csv_text(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """Return a CSV document with every cell passed through :func:`safe_cell`."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)  # RFC 4180 line ends, so a CR inside a cell is quoted
    writer.writerow([safe_cell(name) for name in header])
    for row in rows:
        writer.writerow([safe_cell(cell) for cell in row])
    return buffer.getvalue()


def write_csv(path: str | Path, header: Sequence[str], rows: Iterable[Sequence[object]]) -> Path:
    """Write a CSV file atomically with formula-injection escaping and return its path.

    Raises
    ------
    OutputError
        One sentence when the file cannot be written (full disk, no permission).
    """
    return write_text_atomic(path, csv_text(header, rows))
