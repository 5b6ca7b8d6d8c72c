"""``radiomics extract-batch`` writes its CSV the house way: escaped, checked first, atomic."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from her2viewer.cli import main
from her2viewer.radiomics.volume import Volume, write_nrrd

ARGS = ("--classes", "firstorder")


def _cases(tmp_path: Path, case_id: str) -> Path:
    """One small NRRD volume and ROI, listed in a cases CSV under ``case_id``."""
    image = np.random.default_rng(0).normal(100, 10, (4, 8, 8)).astype(np.int16)
    mask = np.zeros(image.shape, np.uint8)
    mask[1:3, 2:6, 2:6] = 1
    write_nrrd(tmp_path / "img.nrrd", Volume(image, (2.0, 0.8, 0.8)))
    write_nrrd(tmp_path / "roi.nrrd", Volume(mask, (2.0, 0.8, 0.8)))
    cases = tmp_path / "cases.csv"
    cases.write_text(f"case_id,image,mask\n{case_id},img.nrrd,roi.nrrd\n")
    return cases


def test_a_formula_in_a_case_id_is_escaped(tmp_path, capsys):
    out = tmp_path / "features.csv"
    cases = _cases(tmp_path, "=HYPERLINK(1)")
    assert main(["radiomics", "extract-batch", str(cases), "-o", str(out), *ARGS]) == 0
    assert out.read_text().splitlines()[1].startswith("'=HYPERLINK(1)")


def test_an_unwritable_output_is_refused_before_the_work(tmp_path, capsys, monkeypatch):
    import her2viewer.cli.radiomics as verbs

    def no_work(*_args):
        raise AssertionError("features were computed for an output that cannot be written")

    monkeypatch.setattr(verbs, "_features", no_work)
    cases = _cases(tmp_path, "c0")
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a folder")
    out = blocker / "features.csv"
    assert main(["radiomics", "extract-batch", str(cases), "-o", str(out), *ARGS]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(blocker) in err


def test_a_cases_file_without_the_columns_is_one_sentence(tmp_path, capsys):
    cases = tmp_path / "cases.csv"
    cases.write_text("id,image\nc0,img.nrrd\n")
    assert main(["radiomics", "extract-batch", str(cases), "-o", str(tmp_path / "f.csv")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cases.csv needs the columns case_id, image, mask" in err
