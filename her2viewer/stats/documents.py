"""Reports as self-contained HTML (jinja2 templates) and PDF (matplotlib's PDF backend).

A report is a title, paragraphs, :class:`Table` objects and figures. The HTML comes from a
template in ``resources/templates/`` with autoescaping on (study, case and reader names are
user text) and its figures inlined as base64 PNG; the PDF holds the same paragraphs, tables
and figures, drawn with matplotlib (already used for every figure, so no second rendering
engine, no browser and no system library is needed).
"""

from __future__ import annotations

import base64
import io
import math
import os
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import jinja2
import matplotlib
import matplotlib.table
from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure

from her2viewer.outputs import atomic_output
from her2viewer.paths import RESOURCES_DIR
from her2viewer.stats.figures import write_errors
from her2viewer.stats.style import DPI, STYLE

#: Folder of the report templates (inside the wheel as ``her2viewer/resources/templates``).
TEMPLATES_DIR = RESOURCES_DIR / "templates"
#: A4 landscape, inches and points.
PAGE = (11.69, 8.27)
PAGE_PT = (PAGE[0] * 72, PAGE[1] * 72)
#: Page margin, points.
MARGIN_PT = 40
#: Row height of PDF tables over matplotlib's own (its 10 pt text height x 1.2), and the
#: resulting height of a row and of a table title, points.
ROW_SCALE = 1.4
ROW_PT = matplotlib.table.Table.FONTSIZE * 1.2 * ROW_SCALE
TITLE_PT = 30


@dataclass
class Table:
    """A titled table of text cells, shown alike in the HTML and the PDF."""

    title: str
    header: list[str]
    rows: list[list[str]]
    note: str = ""


@dataclass
class Report:
    """What a report shows: a title, warnings, paragraphs, tables and titled figures."""

    title: str
    paragraphs: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    figures: list[tuple[str, Figure]] = field(default_factory=list)


def format_value(value) -> str:
    """Return a number or text as report text: 3 decimals, small values in 3 digits, '–'."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1e-3 and value != 0 else f"{value:.3f}"
    return str(value)


def _environment() -> jinja2.Environment:
    """Return the template environment: autoescaped, strict about missing values."""
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def png_data_uri(figure: Figure) -> str:
    """Return a figure as a ``data:image/png;base64,...`` URI to inline in HTML."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def render_html(template: str, report: Report, **context) -> str:
    """Render ``template`` with the report (figures as data URIs) and extra ``context``."""
    figures = [(title, png_data_uri(figure)) for title, figure in report.figures]
    return _environment().get_template(template).render(report=report, figures=figures, **context)


def write_pdf(path: str | os.PathLike, report: Report) -> Path:
    """Write the report as a PDF, atomically: text and tables flowing down A4 pages, then
    one figure a page, each given its report title as a suptitle."""
    metadata = {"Title": report.title, "CreationDate": None}
    with (
        atomic_output(path) as tmp,
        write_errors(Path(path)),
        matplotlib.rc_context(STYLE),
        PdfPages(tmp, metadata=metadata) as pdf,
    ):
        flow = _Flow(pdf)
        flow.text(report.title, 18, "bold")
        for warning in report.warnings:
            flow.text(warning, 11, "bold", colour="#a04000")
        for paragraph in report.paragraphs:
            flow.text(paragraph, 10)
        for table in report.tables:
            flow.table(table)
        flow.finish()
        for title, figure in report.figures:
            figure.suptitle(title, fontsize=9, color="0.35")  # placed by the layout
            pdf.savefig(figure)
    return Path(path)


class _Flow:
    """Text and tables laid out down A4 pages (points from the top), a new page when full."""

    def __init__(self, pdf: PdfPages):
        self.pdf = pdf
        self.page: Figure | None = None
        self.y = 0.0

    def _room(self, height: float) -> None:
        """Start a new page unless ``height`` points fit below the cursor."""
        if self.page is None or self.y + height > PAGE_PT[1] - MARGIN_PT:
            self.finish()
            self.page = Figure(figsize=PAGE)
            self.y = MARGIN_PT

    def _top(self) -> float:
        """The cursor as a fraction of the page height from the bottom."""
        return 1 - self.y / PAGE_PT[1]

    def text(self, text: str, size: float, weight: str = "normal", colour: str = "black") -> None:
        """Add a paragraph wrapped to the page width."""
        wrapped = textwrap.fill(text, int(1300 / size))
        height = (wrapped.count("\n") + 1) * size * 1.4 + size
        self._room(height)
        self.page.text(
            MARGIN_PT / PAGE_PT[0], self._top(), wrapped, fontsize=size, weight=weight,
            color=colour, va="top", linespacing=1.4,
        )  # fmt: skip
        self.y += height

    def table(self, table: Table) -> None:
        """Add a titled table, continued on the next pages when it does not fit."""
        rows = [[textwrap.shorten(cell, 60) for cell in row] for row in table.rows]
        rows = rows or [["–"] * len(table.header)]
        first = True
        while rows:
            self._room(TITLE_PT + 3 * ROW_PT)
            title = table.title if first else f"{table.title} (continued)"
            self.text(title, 11, "bold")
            if table.note and first:
                self.text(table.note, 9)
            fit = max(int((PAGE_PT[1] - MARGIN_PT - self.y) / ROW_PT) - 2, 1)
            self._draw(table.header, rows[:fit])
            self.y += (min(fit, len(rows)) + 2) * ROW_PT
            rows, first = rows[fit:], False

    def _draw(self, header: list[str], rows: list[list[str]]) -> None:
        """Draw ``rows`` as a table artist hanging from the cursor."""
        bottom = MARGIN_PT / PAGE_PT[1]
        left = MARGIN_PT / PAGE_PT[0]
        axes = self.page.add_axes((left, bottom, 1 - 2 * left, self._top() - bottom))
        axes.axis("off")
        drawn = axes.table(cellText=rows, colLabels=header, loc="upper left")
        drawn.auto_set_font_size(False)
        drawn.set_fontsize(9)
        drawn.scale(1, ROW_SCALE)
        drawn.auto_set_column_width(list(range(len(header))))
        for (row, _), cell in drawn.get_celld().items():
            if row == 0:
                cell.set_facecolor("#e8e8e8")
                cell.set_text_props(weight="bold")

    def finish(self) -> None:
        """Write the page being filled, if any."""
        if self.page is not None:
            self.pdf.savefig(self.page)
            self.page = None
