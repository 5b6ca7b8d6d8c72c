"""``her2viewer cells detect|score``: the JSON fields, the files, the region, one-line errors
(in-process through ``main`` with capsys)."""

from __future__ import annotations

import json

import pytest
import shapely
from PIL import Image

from her2viewer.cli.main import main
from her2viewer.geometry.geojson import Feature, read_features, write_features
from her2viewer.slide.cell_field import draw_cell_field

#: PNG resolution of 0.5 um/px (dots per inch).
DPI_05_UM = 50800


@pytest.fixture(scope="module")
def field(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cells_cli")
    cells = draw_cell_field(600, 400, (0.2, 0.2, 0.4, 0.2), marker="her2", seed=7)
    Image.fromarray(cells.rgb).save(folder / "her2.png", dpi=(DPI_05_UM,) * 2)
    Image.fromarray(cells.rgb).save(folder / "plain.png")
    return folder


def _run(capsys, *args):
    status = main(["cells", *map(str, args)])
    out, err = capsys.readouterr()
    return status, out, err


def _one_line_error(capsys, *args, fragment):
    status, out, err = _run(capsys, *args)
    assert status == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err and fragment in lines[0], err


def test_score_json_has_the_counts_category_and_membrane_classes(field, capsys):
    status, out, _ = _run(capsys, "score", field / "her2.png", "--marker", "her2", "--json",
                          "--quiet")  # fmt: skip
    assert status == 0
    summary = json.loads(out)
    for key in ("n_cells", "n_positive", "positive_percent", "category", "label", "rule"):
        assert key in summary
    assert summary["n_cells"] > 100
    assert set(summary["class_percent"]) == {
        "0", "faint incomplete", "weak-moderate complete", "strong complete"
    }  # fmt: skip
    assert summary["category"] == "3+"  # 20% strong complete
    assert summary["tumor_cells"] == "no tumor region: all detected cells counted"


def test_detect_writes_parquet_and_geojson_without_a_category(field, capsys, tmp_path):
    table, cells = tmp_path / "cells.parquet", tmp_path / "cells.geojson"
    status, out, _ = _run(capsys, "detect", field / "her2.png", "-o", table, "--geojson", cells,
                          "--json", "--quiet")  # fmt: skip
    assert status == 0
    summary = json.loads(out)
    assert "category" not in summary and summary["n_cells"] > 100
    assert table.stat().st_size > 0
    features = read_features(cells)
    assert len(features) == summary["n_cells"]
    assert features[0].object_type == "cell" and features[0].nucleus is not None


def test_roi_class_restricts_the_cells_and_readable_output_names_it(field, capsys, tmp_path):
    roi = tmp_path / "tumor.geojson"
    write_features(roi, [
        Feature(shapely.box(50, 50, 300, 250), class_name="Tumor"),
        Feature(shapely.box(350, 50, 550, 350), class_name="Stroma"),
    ])  # fmt: skip
    status, out, _ = _run(capsys, "score", field / "her2.png", "--marker", "her2", "--roi", roi,
                          "--roi-class", "Tumor", "--json", "--quiet")  # fmt: skip
    assert status == 0
    summary = json.loads(out)
    assert summary["tumor_cells"] == "inside the region"
    assert summary["region"].startswith("1 Tumor annotation")
    assert summary["region_area_um2"] == pytest.approx(250 * 200 * 0.5**2)
    assert 50 < summary["n_cells"] < 300  # the Tumor box only, not the Stroma one
    status, out, _ = _run(capsys, "score", field / "her2.png", "--marker", "her2", "--roi", roi,
                          "--roi-class", "Tumor", "--quiet")  # fmt: skip
    assert "Tumor cells: 1 Tumor annotation" in out and "Category 3+" in out


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("-o", "cells.txt"), "-o cells.txt"),
        (("--profile", "er-sp1"), "is for er, not her2"),
        (("--profile", "no-such-profile"), "No scoring profile"),
        (("--roi-class", "Tumor"), "give --roi too"),
        (("--model", "missing.pt"), "No nucleus model"),
    ],
)
def test_user_errors_are_one_line(field, capsys, args, fragment):
    _one_line_error(capsys, "score", field / "her2.png", "--marker", "her2", "--quiet", *args,
                    fragment=fragment)  # fmt: skip


def test_image_without_pixel_size_asks_for_mpp(field, capsys):
    _one_line_error(capsys, "detect", field / "plain.png", "--quiet", fragment="--mpp")
    status, out, _ = _run(capsys, "detect", field / "plain.png", "--mpp", "0.5", "--json",
                          "--quiet")  # fmt: skip
    assert status == 0 and json.loads(out)["n_cells"] > 100


def test_ki67_hot_spot_method_says_which_and_where(field, capsys):
    ki67 = draw_cell_field(600, 400, (0.6, 0.2, 0.1, 0.1), marker="ki67", seed=8)
    Image.fromarray(ki67.rgb).save(field / "ki67.png", dpi=(DPI_05_UM,) * 2)
    status, out, _ = _run(capsys, "score", field / "ki67.png", "--marker", "ki67",
                          "--ki67-method", "hot-spot", "--json", "--quiet")  # fmt: skip
    summary = json.loads(out)
    spot = summary["figures"]["hot_spot"]
    assert status == 0 and summary["figures"]["method"] == "hot spot"
    assert summary["ki67_method"] == "hot-spot"
    assert spot["n_cells"] == summary["figures"]["n_counted"] <= summary["n_cells"]
    assert 0 <= spot["x"] <= 600 and 0 <= spot["y"] <= 400
    status, out, _ = _run(capsys, "score", field / "ki67.png", "--marker", "ki67", "--quiet")
    assert status == 0 and "hot spot" not in out
    with pytest.raises(SystemExit) as exit_info:  # argparse's choices, one line
        _run(capsys, "score", field / "ki67.png", "--marker", "ki67", "--ki67-method", "densest")
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and len(err) == 1 and "--ki67-method" in err[0], err


def test_score_report_writes_the_cells_section_in_html_and_pdf(field, capsys, tmp_path):
    status, _, _ = _run(capsys, "score", field / "her2.png", "--marker", "her2", "--quiet",
                        "--report", tmp_path / "report")  # fmt: skip
    assert status == 0
    assert sorted(p.name for p in (tmp_path / "report").iterdir()) == [
        "case_report.html",
        "case_report.pdf",
    ]
    html = (tmp_path / "report" / "case_report.html").read_text()
    assert "Cells (HER2)" in html and "strong complete" in html
    assert "HER2 category 3+ (HER2-positive)" in html and "ASCO/CAP 2018" in html
    assert "Per-cell scores (HER2)" in html and "Positive cells per mm² (HER2)" in html
    assert html.count("data:image/png;base64,") == 3  # slide, histogram, density map
    assert (tmp_path / "report" / "case_report.pdf").read_bytes().startswith(b"%PDF")


def test_report_into_a_file_is_one_line_before_any_work(field, capsys, tmp_path):
    (tmp_path / "taken").write_text("")
    _one_line_error(capsys, "score", field / "her2.png", "--marker", "her2", "--quiet",
                    "--report", tmp_path / "taken", fragment="taken")  # fmt: skip
