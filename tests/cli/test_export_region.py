"""Verb export-region: a region of a slide as PNG or TIFF, the TIFF written in tiles."""

import cv2
import numpy as np
import pytest
import tifffile

from her2viewer.cli.main import main
from her2viewer.overlay import region
from her2viewer.slide import open_slide
from tests.reliability.conftest import (
    assert_one_line_error,
    fill_disk,
    leftovers,
    one_line_error,
    run_verb,
    tiny_disk,  # noqa: F401 - the fixture
)


def test_tiff_at_full_resolution_is_the_slide_itself_across_tiles(cmu_svs, tmp_path, capsys):
    out = tmp_path / "region.tif"
    rect = (100, 200, 1300, 1100)  # 3 x 3 tiles of 512 px, the last ones partial
    assert main(["export-region", str(cmu_svs), "--rect", "100,200,1300,1100", "-o", str(out)]) == 0
    assert "1300 x 1100 px" in capsys.readouterr().out
    with tifffile.TiffFile(out) as tif:
        page = tif.pages[0]
        assert page.is_tiled and page.tilewidth == region.TILE
        pixels = page.asarray()
    with open_slide(cmu_svs) as slide:
        expected = slide.read_region(rect[:2], 0, rect[2:])
        mpp = slide.info.mpp_x
    assert np.array_equal(pixels, expected)
    resolution = page.tags["XResolution"].value
    assert resolution[0] / resolution[1] == pytest.approx(1e4 / mpp, rel=1e-3)  # px per cm


def test_png_at_a_downsample_has_the_size_and_look_of_the_region(cmu_svs, tmp_path, capsys):
    out = tmp_path / "region.png"
    args = ["export-region", str(cmu_svs), "--rect", "0,0,2000,1500", "--downsample", "4"]
    assert main([*args, "-o", str(out), "--json"]) == 0
    assert '"width": 500' in capsys.readouterr().out
    image = cv2.cvtColor(cv2.imread(str(out)), cv2.COLOR_BGR2RGB)
    assert image.shape == (375, 500, 3)
    with open_slide(cmu_svs) as slide:
        coarse = cv2.resize(slide.read_region((0, 0), 0, (2000, 1500)), (500, 375), cv2.INTER_AREA)
    assert np.abs(image.astype(int) - coarse).mean() < 4


@pytest.mark.parametrize(
    ("rect", "name", "fragment"),
    [
        ("0,0,5000,100", "r.tif", "leaves the slide"),
        ("-5,0,100,100", "r.tif", "leaves the slide"),
        ("0,0,0,100", "r.tif", "is empty"),
        ("0,0,100,100", "r.jpg", "r.jpg: export a region as .png, .tif or .tiff"),
    ],
)
def test_refusals_are_one_sentence(cmu_svs, tmp_path, capsys, rect, name, fragment):
    out = tmp_path / name
    assert main(["export-region", str(cmu_svs), f"--rect={rect}", "-o", str(out)]) == 2
    one_line_error(capsys, fragment)
    assert not out.exists()


def test_png_too_large_is_refused_with_a_pointer_to_tiff(cmu_svs, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(region, "MAX_PNG_PIXELS", 1000 * 1000)
    out = tmp_path / "big.png"
    assert main(["export-region", str(cmu_svs), "--rect", "0,0,2000,2000", "-o", str(out)]) == 2
    one_line_error(capsys, "too large for PNG", ".tif")
    assert (
        main(
            [
                "export-region",
                str(cmu_svs),
                "--rect",
                "0,0,2000,2000",
                "-o",
                str(out),
                "--downsample",
                "2",
            ]
        )
        == 0
    )


def test_bad_rect_and_downsample_are_one_line(cmu_svs, tmp_path):
    result = run_verb(
        "export-region", str(cmu_svs), "--rect", "1,2,3", "-o", str(tmp_path / "r.tif")
    )
    assert_one_line_error(result, "--rect", "x,y,w,h")
    with pytest.raises(SystemExit) as exit_:
        main(["export-region", str(cmu_svs), "--rect=0,0,9,9", "--downsample=0.5", "-o=r.tif"])
    assert exit_.value.code == 2


def test_full_disk_leaves_nothing_behind(cmu_svs, tiny_disk, capsys):  # noqa: F811
    disk = tiny_disk(512)
    fill_disk(disk, leave_bytes=64 * 1024)
    out = disk / "region.tif"
    assert main(["export-region", str(cmu_svs), "--rect", "0,0,2000,2000", "-o", str(out)]) == 2
    one_line_error(capsys, "region.tif")
    assert not out.exists() and not leftovers(disk)
