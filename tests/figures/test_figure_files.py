"""File figures come from matplotlib in one style, in the format of their suffix, atomically."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from her2viewer.errors import OutputError
from her2viewer.radiomics.plots import write_report_figures
from her2viewer.stats import figures, style
from tests.reliability import conftest as reliability
from tests.reliability.conftest import fill_disk, leftovers

tiny_disk = reliability.tiny_disk  # the fixture: a real small file system

ROOT = Path(__file__).resolve().parents[2]
#: Every module that draws file figures or reports.
FIGURE_MODULES = [
    "her2viewer/stats/figures.py",
    "her2viewer/stats/style.py",
    "her2viewer/stats/documents.py",
    "her2viewer/study/report.py",
    "her2viewer/radiomics/plots.py",
    "her2viewer/case_report.py",
]
MAGIC = {".png": b"\x89PNG", ".pdf": b"%PDF", ".svg": b"<?xml"}


def _roc():
    return figures.roc_figure([0, 0.2, 1], [0, 0.8, 1], [("ann", 0.3, 0.7)], auc=0.8)


@pytest.mark.parametrize("suffix", sorted(MAGIC))
def test_the_suffix_chooses_the_format(tmp_path, suffix):
    path = figures.save_figure(_roc(), tmp_path / f"roc{suffix}")
    assert path.read_bytes().startswith(MAGIC[suffix])
    assert leftovers(tmp_path) == []


def test_svg_keeps_text_as_text(tmp_path):
    svg = figures.save_figure(_roc(), tmp_path / "roc.svg").read_text()
    assert "sensitivity" in svg and "model (AUC 0.80)" in svg


def test_an_unknown_suffix_is_one_sentence(tmp_path):
    with pytest.raises(OutputError, match=r"roc\.jpg.*\.png, \.svg or \.pdf\.$"):
        figures.save_figure(_roc(), tmp_path / "roc.jpg")
    assert list(tmp_path.iterdir()) == []


def test_a_full_disk_leaves_no_figure(tiny_disk):
    disk = tiny_disk(256)
    fill_disk(disk, leave_bytes=4096)
    with pytest.raises(OutputError, match="disk is full"):
        figures.save_figure(_roc(), disk / "roc.pdf")
    assert not (disk / "roc.pdf").exists() and leftovers(disk) == []


def test_every_figure_kind_draws_in_the_house_style(tmp_path):
    drawn = {
        "confusion.png": figures.confusion_figure(["0", "1+"], [[3, 1], [0, 4]], "cm"),
        "bars.png": figures.bar_figure(["a", "b"], [2.0, 3.0], [1.0, 2.0], [4.0, 5.0], "t"),
        "curves.png": figures.curves_figure("c", "x", "y", {"s": ([0, 1], [0.2, 0.9])}),
        "images.png": figures.images_figure("i", {"a": np.zeros((4, 6, 3), np.uint8)}),
    }
    for name, figure in drawn.items():
        image = Image.open(figures.save_figure(figure, tmp_path / name))
        assert image.info["Software"].startswith("Matplotlib"), name
        width, height = image.size
        assert width >= style.SIZE[0] * style.DPI * 0.95, name
        assert figure.texts or figure.axes[0].get_title(), name


def test_palette_is_okabe_ito_and_needs_no_matplotlib():
    assert style.PALETTE[:3] == [(0, 114, 178), (213, 94, 0), (0, 158, 115)]
    assert len(set(style.PALETTE)) == len(style.PALETTE) == 8
    code = "import sys, her2viewer.stats.style; print('matplotlib' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "False", result.stderr


def test_radiomics_figures_are_matplotlib_pngs(tmp_path):
    curve = {"fpr": [0, 0.5, 1], "tpr": [0, 0.9, 1]}
    model = {
        "auc": 0.9,
        "average_precision": 0.8,
        "roc": curve,
        "pr": {"recall": [0, 0.5, 1], "precision": [1, 0.9, 0.5]},
        "learning_curve": {"sizes": [5, 10], "train_auc": [1, 0.95], "validation_auc": [0.6, 0.8]},
        "classes": ["negative", "positive"],
        "confusion": [[4, 1], [1, 4]],
    }
    report = {
        "pca": {"components": 2, "cumulative_variance": [0.6, 0.9, 1.0]},
        "models": {"lr": model},
    }
    paths = write_report_figures(report, tmp_path)
    assert {p.name for p in paths} == {
        "pca_variance.png",
        "roc.png",
        "precision_recall.png",
        "learning_curve_lr.png",
        "confusion_lr.png",
    }
    for path in paths:
        assert Image.open(path).info["Software"].startswith("Matplotlib"), path.name


def test_no_figure_is_drawn_with_cv2_primitives():
    pattern = re.compile(r"cv2\.(line|putText|rectangle|circle|polylines|imencode)\b")
    for name in FIGURE_MODULES:
        assert not pattern.search((ROOT / name).read_text()), name
    assert not (ROOT / "her2viewer/study/plots.py").exists()
