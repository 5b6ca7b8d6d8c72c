"""Issue 13, slides and the ``view`` verb: memory caps of plain images and bundle zips (item 9), the
screenshot that must be written or refused (item 5), and ``view`` options checked at
parse time (items 12 and 19)."""

from __future__ import annotations

import struct
import tracemalloc
import zipfile
import zlib

import cv2
import numpy as np
import pytest
import tifffile

from her2viewer.cli import build_parser, main
from her2viewer.errors import ModelError, SlideError
from her2viewer.models.bundle import load_bundle
from her2viewer.slide import open_slide
from her2viewer.slide.image_backend import MAX_IMAGE_PIXELS, _to_rgb8
from tests.reliability.conftest import fill_disk, last_line_error, leftovers, one_line_error


def _png_declaring(path, width: int, height: int) -> None:
    """Write a small 1-bit PNG whose header declares ``width`` x ``height`` pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    rows = zlib.compress(b"\0" * (1 + (width + 7) // 8) * 4)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")
    )


@pytest.fixture()
def small_png(tmp_path):
    """A 600 x 400 plain image with a pink block: a slide that renders in a second."""
    image = np.full((400, 600, 3), 255, np.uint8)
    image[100:300, 100:500] = (200, 120, 180)
    path = tmp_path / "small.png"
    cv2.imwrite(str(path), image)
    return path


# -- item 9: memory --------------------------------------------------------------------
def test_a_small_png_declaring_60000_squared_is_refused_before_decoding(tmp_path, capsys):
    path = tmp_path / "bomb.png"
    _png_declaring(path, 60000, 60000)
    assert path.stat().st_size < 10_000
    assert main(["info", str(path)]) == 2
    one_line_error(capsys, "bomb.png", "60000 x 60000", "gigapixels", "pyramidal TIFF")


def test_a_flat_tiff_declaring_too_many_pixels_is_refused(tmp_path):
    path = tmp_path / "huge.tif"
    tifffile.imwrite(path, np.zeros((16, 16), np.uint8))
    with tifffile.TiffFile(path, mode="r+b") as tif:
        tif.pages.first.tags["ImageWidth"].overwrite(50000)
        tif.pages.first.tags["ImageLength"].overwrite(50000)
    assert MAX_IMAGE_PIXELS < 50000 * 50000
    with pytest.raises(SlideError, match="huge.tif declares 50000 x 50000 pixels"):
        open_slide(path)


def test_one_bit_images_convert_without_a_float64_copy():
    bits = np.zeros((2000, 2000), bool)
    bits[::2] = True
    tracemalloc.start()
    try:
        rgb = _to_rgb8(bits, "bits.png")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert rgb.dtype == np.uint8 and set(np.unique(rgb)) == {0, 255}
    assert peak < 2 * rgb.nbytes, peak  # a float64 copy alone is 8 bytes a pixel


def test_signed_and_float_samples_are_clipped_not_wrapped():
    signed = np.array([[-100, 0, 32767]], np.int16)
    assert _to_rgb8(signed, "s.tif")[0, :, 0].tolist() == [0, 0, 255]
    floats = np.array([[-0.5, np.nan, 0.5, 2.0]], np.float32)
    assert _to_rgb8(floats, "f.tif")[0, :, 0].tolist() == [0, 0, 127, 255]


def _bundle_zip(path, members: dict[str, bytes]):
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("bundle.json", '{"schema_version": 1, "model_kind": "clam"}')
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def test_a_bundle_zip_that_inflates_far_beyond_its_size_is_refused(tmp_path):
    bomb = _bundle_zip(tmp_path / "bomb.zip", {"model.safetensors": bytes(4 * 2**20)})
    assert bomb.stat().st_size < 50_000
    with pytest.raises(ModelError, match="bomb.zip: model.safetensors would inflate"):
        load_bundle(bomb)


def test_a_bundle_zip_listing_thousands_of_files_is_refused(tmp_path):
    crowd = _bundle_zip(tmp_path / "crowd.zip", {f"x{i}.txt": b"" for i in range(1500)})
    with pytest.raises(ModelError, match="lists 1501 files"):
        load_bundle(crowd)


def test_a_damaged_bundle_zip_is_one_sentence(tmp_path):
    weights = np.random.default_rng(0).bytes(200_000)
    path = _bundle_zip(tmp_path / "damaged.zip", {"model.safetensors": weights})
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # inside the compressed weights: a CRC error on reading
    path.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="damaged.zip is a damaged bundle zip"):
        load_bundle(path)


# -- items 12 and 19: options checked at parse time ------------------------------------
@pytest.mark.parametrize(
    "option",
    [
        ("--size", "60000x60000"),
        ("--size", "0x0"),
        ("--size", "wide"),
        ("--center", "nan,nan"),
        ("--center", "inf,5"),
        ("--magnification", "-1"),
        ("--magnification", "nan"),
        ("--magnification", "abc"),
        ("--cache-mb", "-1"),
        ("--cache-mb", "inf"),
    ],
)
def test_view_refuses_bad_numbers_at_parse_time(option, capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["view", "slide.svs", *option])
    assert exit_info.value.code == 2
    assert f"argument {option[0]}" in capsys.readouterr().err


def test_view_center_outside_the_slide_is_refused(small_png, tmp_path, capsys):
    out = tmp_path / "shot.png"
    assert main(["view", str(small_png), "--center", "5000,10", "--screenshot", str(out)]) == 2
    one_line_error(capsys, "--center", "small.png", "600 x 400")
    assert not out.exists()


# -- item 5: the screenshot is written, or refused in one sentence ---------------------
def test_screenshot_into_a_folder_or_under_a_file_is_refused(small_png, tmp_path, capsys):
    assert main(["view", str(small_png), "--screenshot", str(tmp_path)]) == 2
    one_line_error(capsys, str(tmp_path), "folder")
    blocker = tmp_path / "notes.txt"
    blocker.write_text("a file, not a folder")
    assert main(["view", str(small_png), "--screenshot", str(blocker / "shot.png")]) == 2
    one_line_error(capsys, "notes.txt")
    assert blocker.read_text() == "a file, not a folder"


def test_screenshot_on_a_full_disk_leaves_nothing(small_png, tiny_disk, capsys):
    disk = tiny_disk(256)
    fill_disk(disk, leave_bytes=2048)
    out = disk / "shot.png"
    code = main(["view", str(small_png), "--screenshot", str(out), "--size", "640x480"])
    assert code == 2
    one_line_error(capsys, "shot.png", "disk is full")
    assert not out.exists() and leftovers(disk) == []


def test_screenshot_is_written_and_reported(small_png, tmp_path, capsys):
    out = tmp_path / "shot.png"
    assert main(["view", str(small_png), "--screenshot", str(out), "--size", "640x480"]) == 0
    assert f"to {out.resolve()}" in capsys.readouterr().out
    image = cv2.imread(str(out))
    assert image is not None and min(image.shape[:2]) >= 480 and len(np.unique(image)) > 2


def _garbled(synthetic_case, tmp_path, levels: tuple[int, ...]):
    """A copy of the synthetic H&E whose tile data is noise in the given pyramid levels."""
    source = synthetic_case / "he.svs"
    data = bytearray(source.read_bytes())
    rng = np.random.default_rng(0)
    with tifffile.TiffFile(source) as tif:
        for level in levels:
            page = tif.pages[level]
            for offset, count in zip(page.dataoffsets, page.databytecounts, strict=True):
                data[offset + 2 : offset + count] = rng.bytes(count - 2)  # after the JPEG SOI
    path = tmp_path / "garbled.svs"
    path.write_bytes(bytes(data))
    return path


def test_a_slide_that_cannot_be_decoded_is_refused_before_rendering(
    synthetic_case, tmp_path, capsys
):
    slide = _garbled(synthetic_case, tmp_path, levels=(0, 2))
    out = tmp_path / "shot.png"
    assert main(["view", str(slide), "--screenshot", str(out)]) == 2
    one_line_error(capsys, "garbled.svs", "could not be decoded")
    assert not out.exists()


def test_tiles_that_fail_while_rendering_refuse_the_screenshot(synthetic_case, tmp_path, capsys):
    slide = _garbled(synthetic_case, tmp_path, levels=(0,))  # the thumbnail still decodes
    out = tmp_path / "shot.png"
    args = ["view", str(slide), "--screenshot", str(out), "--size", "640x480"]
    assert main([*args, "--magnification", "20"]) == 2
    one_line_error(capsys, "could not be read", "garbled.svs")
    assert not out.exists() and leftovers(tmp_path) == []


# -- item 1/14 in the slide room: demo-data writes all or nothing ----------------------
def test_demo_data_on_a_full_disk_is_one_sentence_and_leaves_nothing(tiny_disk, capsys):
    disk = tiny_disk(256)
    fill_disk(disk, leave_bytes=60_000)
    out = disk / "cohort"
    assert main(["demo-data", str(out), "--cases", "1", "--size", "1024x1024"]) == 2
    last_line_error(capsys, "disk is full")  # after the line saying 0/1 cases
    assert leftovers(disk) == [] and not list(out.rglob("*.svs"))
