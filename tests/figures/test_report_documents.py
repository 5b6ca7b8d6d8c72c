"""Study and case reports render from jinja2 templates: escaped HTML with inlined figures, PDF."""

from __future__ import annotations

import re

import numpy as np
import pytest
from study_util import make_study

from her2viewer.case_report import render_case_report
from her2viewer.cli import build_parser
from her2viewer.demo import analyse_demo_case
from her2viewer.errors import OutputError
from her2viewer.paths import RESOURCES_DIR
from her2viewer.stats.documents import TEMPLATES_DIR, Report, Table, write_pdf
from her2viewer.study.report import write_report
from her2viewer.study.store import StudyStore
from tests.reliability import conftest as reliability
from tests.reliability.conftest import fill_disk, leftovers

tiny_disk = reliability.tiny_disk  # the fixture: a real small file system

EVIL = "<script>alert(1)</script>"


def _pages(pdf: bytes) -> int:
    """Number of pages of a PDF (its /Type /Page objects)."""
    return len(re.findall(rb"/Type\s*/Page\b", pdf))


def _answer_all(path, readers):
    """Every reader answers every case (right on two cases out of three)."""
    rng = np.random.default_rng(3)
    with StudyStore(path) as store:
        for reader in readers:
            store.ensure_reader(reader)
            for i, (case_id, truth) in enumerate(sorted(store.truth().items())):
                wrong = "negative" if truth == "positive" else "positive"
                answer = wrong if i % 3 == 0 else truth
                store.record_answer(reader, "unassisted", case_id, answer, None, rng.uniform(5, 60))


def test_study_report_escapes_reader_names_and_has_a_pdf(tmp_path):
    path = make_study(tmp_path, n=12, arms=("unassisted",))
    _answer_all(path, ["ann", EVIL])
    write_report(path, tmp_path / "report", n_boot=50)
    html = (tmp_path / "report" / "report.html").read_text()
    assert EVIL not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script" not in html.lower()
    assert html.count("data:image/png;base64,") == 1 + 1 + 2 + 1  # roc, model, 2 readers, time
    assert "Reader vs model on the same cases" in html and "have no slide file" in html
    pdf = (tmp_path / "report" / "report.pdf").read_bytes()
    assert pdf.startswith(b"%PDF") and _pages(pdf) >= 1 + 5
    assert leftovers(tmp_path) == []


def test_case_report_from_a_summary(tmp_path, synthetic_case):
    summary = analyse_demo_case(synthetic_case)
    summary["case"] = EVIL
    summary["her2net"] = {"score": 0.91, "label": "positive", "classes": ["neg", "pos"]}
    html_path, pdf_path = render_case_report(summary, tmp_path / "out")
    html = html_path.read_text()
    assert EVIL not in html and "Case report: &lt;script&gt;" in html
    assert "Synthetic demonstration data" in html and "HER2Net" in html
    assert "classes" in html and "neg, pos" in html and "0.910" in html
    assert html.count("data:image/png;base64,") == 1  # the slide thumbnails
    assert pdf_path.read_bytes().startswith(b"%PDF")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "case_report.html",
        "case_report.pdf",
    ]


def test_case_report_without_slide_files(tmp_path):
    summary = {"case": "c1", "he": {"slide": str(tmp_path / "gone.svs"), "size": [10, 20]}}
    html_path, _ = render_case_report(summary, tmp_path)
    html = html_path.read_text()
    assert "gone.svs" in html and "10x20" in html and "data:image/png" not in html


def test_a_long_table_continues_on_the_next_pages(tmp_path):
    rows = [[f"row {i}", str(i)] for i in range(100)]
    report = Report("long", ["text"], tables=[Table("numbers", ["name", "value"], rows)])
    pdf = write_pdf(tmp_path / "long.pdf", report).read_bytes()
    assert _pages(pdf) >= 3


def test_demo_verb_takes_a_report_folder(tmp_path):
    args = build_parser().parse_args(["demo", "--report", str(tmp_path)])
    assert args.report == tmp_path


def test_templates_are_resources():
    assert TEMPLATES_DIR.parent == RESOURCES_DIR
    names = {p.name for p in TEMPLATES_DIR.iterdir()}
    assert {"base.html", "study_report.html", "case_report.html"} <= names


def test_a_full_disk_leaves_no_pdf(tiny_disk):
    disk = tiny_disk(256)
    fill_disk(disk, leave_bytes=8192)
    rows = [[f"row {i}", "x" * 40] for i in range(300)]
    report = Report("long", ["text"], tables=[Table("numbers", ["name", "value"], rows)])
    with pytest.raises(OutputError, match=r"report\.pdf: the disk is full\.$"):
        write_pdf(disk / "report.pdf", report)
    assert not (disk / "report.pdf").exists() and leftovers(disk) == []
