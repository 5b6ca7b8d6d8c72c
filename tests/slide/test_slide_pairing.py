"""Finding the paired IHC slide of an H&E slide."""

from __future__ import annotations

from her2viewer.slide.pairing import find_pair


def test_pair_from_cohort_csv(synthetic_cohort):
    case = synthetic_cohort.parent / "case002"
    assert find_pair(case / "he.svs") == synthetic_cohort.parent / "case002/ihc.svs"


def test_pair_by_file_name(tmp_path):
    for name in ("case7_HE.svs", "case7_HER2.svs", "case8-he.tif", "case8-ihc.tif", "lonely.svs"):
        (tmp_path / name).write_bytes(b"x")
    assert find_pair(tmp_path / "case7_HE.svs") == tmp_path / "case7_HER2.svs"
    assert find_pair(tmp_path / "case8-he.tif") == tmp_path / "case8-ihc.tif"
    assert find_pair(tmp_path / "lonely.svs") is None
    assert find_pair(tmp_path / "case7_HER2.svs") is None  # an IHC slide has no H&E token


def test_unrelated_csv_is_ignored(tmp_path):
    (tmp_path / "notes.csv").write_text("a,b\n1,2\n")
    (tmp_path / "x_he.svs").write_bytes(b"x")
    assert find_pair(tmp_path / "x_he.svs") is None
