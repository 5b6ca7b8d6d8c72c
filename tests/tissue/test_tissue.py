"""Tissue segmentation and patching: quality against the synthetic truth, CLAM compatibility."""

from __future__ import annotations

import csv
import json

import cv2
import h5py
import numpy as np
import pytest
from PIL import Image

from her2viewer.cli import main
from her2viewer.errors import TissueError
from her2viewer.slide import open_slide
from her2viewer.tissue import (
    PRESETS,
    make_patch_grid,
    read_coords_h5,
    read_geojson_polygons,
    segment_tissue,
    segmentation_to_geojson,
    write_coords_h5,
)
from her2viewer.tissue.masks import mask_iou, read_mask


def _rows(labels):
    with labels.open() as handle:
        return list(csv.DictReader(handle))


def test_tissue_iou_above_0_9_on_every_synthetic_slide(synthetic_cohort):
    ious = []
    for row in _rows(synthetic_cohort):
        case = synthetic_cohort.parent / row["case_id"]
        for stain, mask in (("he", "tissue_mask.png"), ("ihc", "ihc_tissue_mask.png")):
            with open_slide(case / f"{stain}.svs") as slide:
                seg = segment_tissue(slide)
            ious.append(mask_iou(seg.mask, read_mask(case / mask)))
    assert min(ious) > 0.9, ious


def test_real_slide_has_tissue(cmu_svs):
    with open_slide(cmu_svs) as slide:
        seg = segment_tissue(slide)
    assert seg.contours and 0.05 < seg.mask.mean() < 0.9
    assert all(c[:, 0].max() <= 2220 and c[:, 1].max() <= 2967 for c in seg.contours)


def _image_slide(tmp_path, name, image):
    path = tmp_path / name
    Image.fromarray(image).save(path)
    return open_slide(path)


def test_all_white_slide_has_no_tissue_even_with_otsu(tmp_path):
    rng = np.random.default_rng(0)
    white = (245 + rng.integers(-3, 4, (2000, 2000, 3))).astype(np.uint8)
    with _image_slide(tmp_path, "white.png", white) as slide:
        for params in ("default", PRESETS["default"].__class__(use_otsu=True)):
            seg = segment_tissue(slide, params)
            assert not seg.contours and not seg.mask.any()
            assert seg.warnings


def test_dark_fluorescence_background_has_no_tissue(tmp_path):
    rng = np.random.default_rng(1)
    dark = rng.integers(0, 25, (2000, 2000, 3)).astype(np.uint8)
    dark[..., 2] += 10  # faint blue cast, very saturated in HSV
    for cx, cy in rng.integers(100, 1900, (40, 2)):
        cv2.circle(dark, (int(cx), int(cy)), 12, (40, 60, 230), -1)  # DAPI-like nuclei
    with _image_slide(tmp_path, "fluor.png", dark) as slide:
        seg = segment_tissue(slide)
    assert not seg.mask.any()
    assert "dark background" in seg.warnings[0]


def test_presets_match_clam():
    assert PRESETS["bwh_biopsy"].sthresh == 15 and PRESETS["bwh_biopsy"].a_t == 1
    assert PRESETS["bwh_resection"].close == 4 and PRESETS["bwh_resection"].a_t == 100
    assert PRESETS["tcga"].a_t == 16 and PRESETS["tcga"].a_h == 4


def test_unknown_preset_is_a_tissue_error(synthetic_case):
    with (
        open_slide(synthetic_case / "he.svs") as slide,
        pytest.raises(TissueError, match="Unknown"),
    ):
        segment_tissue(slide, "nonsense")


def _clam_reference_grid(seg, size0, step0, contour_fn="four_pt"):
    """CLAM's process_contour, transcribed point by point with cv2.pointPolygonTest."""
    coords = []
    for contour, holes in zip(seg.contours, seg.holes, strict=True):
        cont = contour.reshape(-1, 1, 2).astype(np.float32)
        x0, y0 = np.floor(contour.min(axis=0)).astype(int)
        x1, y1 = np.floor(contour.max(axis=0)).astype(int) + 1
        for x in range(x0, x1, step0):
            for y in range(y0, y1, step0):
                cx, cy = x + size0 // 2, y + size0 // 2
                shift = int(size0 // 2 * 0.5)
                points = [
                    (cx - shift, cy - shift),
                    (cx + shift, cy + shift),
                    (cx + shift, cy - shift),
                    (cx - shift, cy + shift),
                ]
                inside = [
                    cv2.pointPolygonTest(cont, (float(px), float(py)), False) >= 0
                    for px, py in points
                ]
                if not (all(inside) if contour_fn == "four_pt_hard" else any(inside)):
                    continue
                centre = (x + size0 / 2, y + size0 / 2)
                if any(
                    cv2.pointPolygonTest(h.reshape(-1, 1, 2).astype(np.float32), centre, False) > 0
                    for h in holes
                ):
                    continue
                coords.append((x, y))
    return np.array(coords, dtype=np.int64).reshape(-1, 2)


@pytest.mark.parametrize("contour_fn", ["four_pt", "four_pt_hard"])
def test_grid_equals_clam_reference_loop(synthetic_case, contour_fn):
    with open_slide(synthetic_case / "he.svs") as slide:
        seg = segment_tissue(slide)
        grid = make_patch_grid(
            slide, seg, magnification=20, patch_size=128, contour_fn=contour_fn, max_background=None
        )
    reference = _clam_reference_grid(seg, 128, 128, contour_fn)
    assert len(grid) > 50
    np.testing.assert_array_equal(grid.coords, reference)


def test_grid_geometry_and_magnification(synthetic_case):
    with open_slide(synthetic_case / "he.svs") as slide:
        seg = segment_tissue(slide)
        at20 = make_patch_grid(slide, seg, magnification=20, patch_size=256)
        at10 = make_patch_grid(slide, seg, magnification=10, patch_size=256)
        at5 = make_patch_grid(slide, seg, magnification=5, patch_size=256)
        assert (at20.patch_level, at20.patch_size, at20.patch_size_level0) == (0, 256, 256)
        assert (at10.patch_level, at10.patch_size, at10.patch_size_level0) == (0, 512, 512)
        assert (at5.patch_level, at5.patch_size, at5.patch_size_level0) == (1, 256, 1024)
        assert at10.mpp == pytest.approx(1.0) and at10.magnification == 10
        patch = at10.read_patch(slide, 0)
        assert patch.shape == (256, 256, 3)
        assert len(at20) > 2.5 * len(at10)
        tissue = read_mask(synthetic_case / "tissue_mask.png")
        centres = (at20.coords + 128) // 16
        assert (
            tissue[
                centres[:, 1].clip(0, tissue.shape[0] - 1),
                centres[:, 0].clip(0, tissue.shape[1] - 1),
            ].mean()
            > 0.8  # four_pt accepts a patch when any one of its four test points is in tissue
        )


def test_background_filter_drops_white_patches(synthetic_case):
    with open_slide(synthetic_case / "he.svs") as slide:
        seg = segment_tissue(slide)
        kept = make_patch_grid(slide, seg, patch_size=256, max_background=0.6)
        everything = make_patch_grid(slide, seg, patch_size=256, max_background=None)
        assert len(kept) < len(everything)
        dropped = {tuple(c) for c in everything.coords} - {tuple(c) for c in kept.coords}
        for x, y in list(dropped)[:10]:
            tile = slide.read_region((x, y), 0, (256, 256))
            hsv = cv2.cvtColor(tile, cv2.COLOR_RGB2HSV)
            assert ((hsv[..., 2] > 200) & (hsv[..., 1] < 12)).mean() > 0.45


def test_slide_without_mpp_falls_back_to_level_0(tmp_path, synthetic_case):
    with open_slide(synthetic_case / "he.svs") as slide:
        image = slide.level_image(0)
    with _image_slide(tmp_path, "core.png", image) as slide:
        grid = make_patch_grid(slide, segment_tissue(slide), magnification=20, patch_size=64)
    assert grid.patch_level == 0 and grid.patch_size == 64 and grid.magnification is None
    assert any("level 0" in w for w in grid.warnings)
    assert len(grid) > 10


def test_coords_h5_has_clam_attributes_and_round_trips(tmp_path, synthetic_case):
    with open_slide(synthetic_case / "he.svs") as slide:
        grid = make_patch_grid(slide, segment_tissue(slide), magnification=10, patch_size=256)
    path = write_coords_h5(tmp_path / "he.h5", grid)
    with h5py.File(path) as h5:
        attrs = h5["coords"].attrs
        for key in (
            "patch_size",
            "patch_level",
            "downsample",
            "downsampled_level_dim",
            "level_dim",
            "name",
            "magnification",
            "mpp",
            "patch_size_level0",
        ):
            assert key in attrs
        assert attrs["patch_size"] == 512 and attrs["patch_level"] == 0
    again = read_coords_h5(path)
    np.testing.assert_array_equal(again.coords, grid.coords)
    assert (again.patch_size, again.target_size, again.magnification) == (512, 256, 10.0)
    assert not list(tmp_path.glob("*.partial"))


def test_coords_file_written_like_clam_loads(tmp_path):
    """A file laid out as CLAM's save_hdf5 writes it (chunked, resizable, its attrs) loads as is."""
    coords = np.array([[0, 0], [512, 0], [1024, 512]], dtype=np.int64)
    path = tmp_path / "slide_1.h5"
    with h5py.File(path, "w") as h5:
        dset = h5.create_dataset(
            "coords", shape=coords.shape, maxshape=(None, 2), chunks=(1, 2), dtype=np.int64
        )
        dset[:] = coords
        dset.attrs["patch_size"] = 512
        dset.attrs["patch_level"] = 0
        dset.attrs["downsample"] = (1.0, 1.0)
        dset.attrs["downsampled_level_dim"] = (46000, 32914)
        dset.attrs["level_dim"] = (46000, 32914)
        dset.attrs["name"] = "slide_1"
        dset.attrs["save_path"] = "RESULTS_DIRECTORY/patches"
    grid = read_coords_h5(path)
    np.testing.assert_array_equal(grid.coords, coords)
    assert (grid.patch_size, grid.patch_level, grid.target_size, grid.name) == (
        512,
        0,
        512,
        "slide_1",
    )
    assert grid.magnification is None


def test_bad_coords_files(tmp_path):
    not_h5 = tmp_path / "a.h5"
    not_h5.write_text("nope")
    with pytest.raises(TissueError, match="cannot be read"):
        read_coords_h5(not_h5)
    features_only = tmp_path / "b.h5"
    with h5py.File(features_only, "w") as h5:
        h5["features"] = np.zeros((2, 4))
    with pytest.raises(TissueError, match="no 'coords'"):
        read_coords_h5(features_only)


def test_geojson_is_qupath_compatible(synthetic_case):
    with open_slide(synthetic_case / "he.svs") as slide:
        seg = segment_tissue(slide)
    collection = json.loads(json.dumps(segmentation_to_geojson(seg)))
    assert collection["type"] == "FeatureCollection"
    feature = collection["features"][0]
    assert feature["properties"]["objectType"] == "annotation"
    assert feature["properties"]["classification"]["name"] == "Tissue"
    ring = feature["geometry"]["coordinates"][0]
    assert ring[0] == ring[-1] and len(ring) >= 4


def test_cli_segment_and_patch(tmp_path, synthetic_case, capsys):
    slide = str(synthetic_case / "he.svs")
    assert main(["segment", slide, "-o", str(tmp_path), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["contours"] >= 1
    polygons = read_geojson_polygons(summary["geojson"])
    assert polygons and polygons[0][0] == "Tissue"
    assert cv2.imread(summary["mask"], cv2.IMREAD_GRAYSCALE).max() == 255
    out = tmp_path / "coords.h5"
    assert (
        main(
            [
                "patch",
                slide,
                "-o",
                str(out),
                "--mag",
                "20",
                "--size",
                "256",
                "--preset",
                "bwh_biopsy",
                "--json",
            ]
        )
        == 0
    )
    summary = json.loads(capsys.readouterr().out)
    assert summary["patches"] == len(read_coords_h5(out)) > 0


def test_cli_patch_bad_slide_exit_2(tmp_path, capsys):
    bad = tmp_path / "x.svs"
    bad.write_text("no")
    assert main(["patch", str(bad), "-o", str(tmp_path / "c.h5")]) == 2
    assert "x.svs" in capsys.readouterr().err


def test_demo_analysis_on_a_cohort_case(synthetic_case):
    from her2viewer.demo import analyse_demo_case, format_summary

    summary = analyse_demo_case(synthetic_case)
    assert summary["he"]["tissue_iou_vs_truth"] > 0.9
    assert summary["ihc"]["tissue_iou_vs_truth"] > 0.9
    assert summary["he"]["patches_20x_256"] > 0
    assert "SYNTHETIC" in format_summary(summary)
