"""The cells analysis on small synthetic slides drawn cell by cell: the contract (summary,
layers, save/load), the region restriction, the files it writes and the outlines."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest
import shapely
from PIL import Image

from her2viewer.analysis.cells import (
    NO_REGION,
    CellsError,
    CellsOptions,
    CellsResult,
    analyse_cells,
)
from her2viewer.annotations.roi import Region
from her2viewer.cells.engine import detect_cell_shapes
from her2viewer.cells.profiles import load_profile
from her2viewer.geometry.geojson import read_features
from her2viewer.jobs import Cancelled, JobContext
from her2viewer.slide import open_slide
from her2viewer.slide.cell_field import draw_cell_field

#: PNG resolution of 0.5 um/px and of 0.25 um/px (dots per inch).
DPI = {0.5: 50800, 0.25: 101600}


def _png(tmp_path, name, field, mpp=0.5):
    path = tmp_path / name
    rgb = field.rgb
    if mpp != field.mpp:  # the same cells scanned finer
        factor = field.mpp / mpp
        size = (round(rgb.shape[1] * factor), round(rgb.shape[0] * factor))
        rgb = np.asarray(Image.fromarray(rgb).resize(size, Image.BICUBIC))
    Image.fromarray(rgb).save(path, dpi=(DPI[mpp],) * 2)
    return path


@pytest.fixture(scope="module")
def her2_field():
    return draw_cell_field(800, 600, (0.3, 0.3, 0.3, 0.1), marker="her2", seed=11)


@pytest.fixture(scope="module")
def her2_result(her2_field, tmp_path_factory):
    path = _png(tmp_path_factory.mktemp("cells"), "her2.png", her2_field)
    with open_slide(path) as slide:
        return analyse_cells(slide, None, CellsOptions(marker="her2"))


def test_summary_counts_every_cell_and_says_there_was_no_region(her2_result, her2_field):
    summary = her2_result.summary()
    assert abs(summary["n_cells"] - len(her2_field.x)) < 0.05 * len(her2_field.x)
    assert summary["n_positive"] == int((her2_result.cells.classes >= 1).sum())
    assert summary["positive_percent"] == pytest.approx(
        100 * summary["n_positive"] / summary["n_cells"], abs=1e-3
    )
    assert summary["tumor_cells"] == NO_REGION and summary["region"] is None
    assert summary["category"] in ("2+", "3+")  # 40% complete, 10% strong
    assert set(summary["class_percent"]) == {
        "0", "faint incomplete", "weak-moderate complete", "strong complete"
    }  # fmt: skip
    assert summary["citation"].startswith("ASCO/CAP 2018")
    assert summary["profile"] == "her2-4b5" and summary["detector"] == "classical"


def test_save_load_round_trip(her2_result, tmp_path):
    loaded = CellsResult.load(her2_result.save(tmp_path / "cells.npz"))
    assert loaded.summary() == her2_result.summary()
    np.testing.assert_array_equal(loaded.cells.classes, her2_result.cells.classes)
    np.testing.assert_array_equal(loaded.outlines.cell_xy, her2_result.outlines.cell_xy)


def test_layers_dots_at_high_zoom_density_at_low_zoom(her2_result):
    density, points = her2_result.layers()
    near, far = (0, 0, 200, 200), (0, 0, 800, 600)
    assert points.render(near, (400, 400)) is not None  # 2x: dots
    assert points.render(far, (50, 38)) is None  # 16x coarser: no dots
    assert density.render(far, (50, 38)) is not None
    assert density.render(near, (400, 400)) is None
    x, y = points.xy[3]
    assert points.value_at(x, y).startswith(her2_result.class_names[points.classes[3]])
    assert np.nanmax(density.values) > 0


def test_region_keeps_only_the_cells_inside(her2_field, tmp_path):
    path = _png(tmp_path, "her2.png", her2_field)
    box = shapely.box(100, 100, 400, 350)
    region = Region(box, "1 Tumor annotation")
    with open_slide(path) as slide:
        result = analyse_cells(slide, None, CellsOptions(region=region))
    table = result.cells.table
    assert len(table) > 50
    assert shapely.contains_xy(box, table.x, table.y).all()
    truth = shapely.contains_xy(box, her2_field.x, her2_field.y).sum()
    assert abs(len(table) - truth) <= 0.1 * truth
    summary = result.summary()
    assert summary["tumor_cells"] == "inside the region"
    assert summary["region"] == "1 Tumor annotation" and summary["region_area_um2"] > 0


def test_finer_scan_is_read_at_half_a_micron(her2_field, tmp_path):
    path = _png(tmp_path, "her2_40x.png", her2_field, mpp=0.25)
    with open_slide(path) as slide:
        result = analyse_cells(slide, None, CellsOptions(outlines=False))
    summary = result.summary()
    assert summary["analysis_mpp"] == pytest.approx(0.5) and summary["mpp"] == pytest.approx(0.25)
    assert abs(summary["n_cells"] - len(her2_field.x)) < 0.05 * len(her2_field.x)
    assert result.cells.table.x.max() > 1000  # level-0 pixels of the 40x image


def test_er_reports_h_score_and_allred(tmp_path):
    field = draw_cell_field(600, 400, (0.5, 0.2, 0.2, 0.1), marker="er", seed=2)
    with open_slide(_png(tmp_path, "er.png", field)) as slide:
        summary = analyse_cells(slide, None, CellsOptions(marker="er")).summary()
    assert summary["category"] == "positive"
    assert 40 < summary["positive_percent"] < 60
    assert 0 < summary["h_score"] <= 300 and summary["allred"]["total"] >= 6


def test_cell_table_csv_and_parquet(her2_result, tmp_path):
    csv = her2_result.write_table(tmp_path / "cells.csv").read_text().splitlines()
    assert csv[0].startswith("cell,class,class_name,x,y,")
    assert len(csv) == len(her2_result.cells) + 1
    table = pq.read_table(her2_result.write_table(tmp_path / "cells.parquet"))
    assert table.num_rows == len(her2_result.cells)
    assert table.column("class_name").to_pylist()[:5] == [
        her2_result.class_names[c] for c in her2_result.cells.classes[:5]
    ]


def test_geojson_cells_load_back_with_nucleus_and_class(her2_result, tmp_path):
    features = read_features(her2_result.write_geojson(tmp_path / "cells.geojson"))
    assert len(features) == len(her2_result.cells)
    table = her2_result.cells.table
    for i in (0, len(features) // 2, len(features) - 1):
        f = features[i]
        assert f.object_type == "cell"
        assert f.class_name == her2_result.class_names[her2_result.cells.classes[i]]
        assert f.color is not None
        assert f.geometry.geom_type == "Polygon" and f.nucleus.geom_type == "Polygon"
        assert f.geometry.contains(f.nucleus.centroid)
        assert f.nucleus.contains(shapely.Point(table.x[i], table.y[i]))
        assert f.geometry.area > f.nucleus.area
        assert f.measurements["membrane_completeness"] == pytest.approx(
            float(table.membrane_completeness[i])
        )


def test_outlines_follow_the_cells_across_tile_edges(her2_field):
    profile = load_profile(None, "her2")

    def read(x, y, w, h):
        return her2_field.rgb[y : y + h, x : x + w]

    table, outlines = detect_cell_shapes(read, (0, 0, 800, 600), 0.5, profile, tile=256,
                                         outlines=True)  # fmt: skip
    assert len(outlines) == len(table)
    for i in range(0, len(table), 37):
        ring = outlines.nucleus(i)
        assert abs(ring[:, 0].mean() - table.x[i]) < 3 and abs(ring[:, 1].mean() - table.y[i]) < 3


def test_skipped_tiles_hold_no_cells(her2_field):
    profile = load_profile(None, "her2")

    def read(x, y, w, h):
        return her2_field.rgb[y : y + h, x : x + w]

    table, _ = detect_cell_shapes(read, (0, 0, 800, 600), 0.5, profile, tile=256,
                                  keep_core=lambda core: core[0] < 256)  # fmt: skip
    assert len(table) > 50 and table.x.max() < 256


def test_image_without_pixel_size_needs_mpp(her2_field, tmp_path):
    path = tmp_path / "plain.png"
    Image.fromarray(her2_field.rgb).save(path)
    with open_slide(path) as slide, pytest.raises(CellsError, match="--mpp"):
        analyse_cells(slide, None, CellsOptions(outlines=False))
    with open_slide(path) as slide:
        result = analyse_cells(slide, None, CellsOptions(mpp=0.5, outlines=False))
    assert len(result.cells) > 100


def test_options_are_checked():
    with pytest.raises(CellsError, match="tumor site"):
        CellsOptions(tumor_site="lung")
    with pytest.raises(CellsError, match="is for er"):
        CellsOptions(marker="her2", profile=load_profile(None, "er")).scoring_profile()


def test_reclassed_applies_new_thresholds_to_the_same_cells(her2_result):
    profile = load_profile(None, "her2")
    assert her2_result.reclassed(profile).summary() == her2_result.summary()
    stricter = profile.model_copy(
        update={"thresholds": profile.thresholds.model_copy(update={"strong": 1.5})}
    )
    again = her2_result.reclassed(stricter)
    assert again.cells.table is her2_result.cells.table
    assert (again.cells.classes == 3).sum() < (her2_result.cells.classes == 3).sum()
    assert again.summary()["thresholds"]["strong"] == 1.5
    assert again.summary()["percentages"]["strong_complete"] < 10


def test_cancel_stops_before_the_remaining_tiles(her2_field):
    profile = load_profile(None, "her2")
    reads = []

    def read(x, y, w, h):
        reads.append((x, y))
        return her2_field.rgb[y : y + h, x : x + w]

    context = JobContext()
    context.listeners.append(lambda progress: context.token.cancel())
    with pytest.raises(Cancelled):
        detect_cell_shapes(read, (0, 0, 800, 600), 0.5, profile, context=context, tile=128,
                           workers=1)  # fmt: skip
    assert len(reads) < 10  # of 35 tiles
