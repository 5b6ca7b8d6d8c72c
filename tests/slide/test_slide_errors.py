"""Bad input gives a one-line SlideError naming the file, never a crash or a hang."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tifffile

from her2viewer.cli import main
from her2viewer.errors import SlideError
from her2viewer.slide import open_slide


def _assert_one_line_naming(exc_info, name: str):
    message = str(exc_info.value)
    assert "\n" not in message
    assert name in message


def test_missing_file(tmp_path):
    with pytest.raises(SlideError) as exc_info:
        open_slide(tmp_path / "nope.svs")
    _assert_one_line_naming(exc_info, "nope.svs")
    assert "no such file" in str(exc_info.value)


def test_directory(tmp_path):
    with pytest.raises(SlideError, match="is a directory") as exc_info:
        open_slide(tmp_path)
    _assert_one_line_naming(exc_info, tmp_path.name)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.svs"
    path.touch()
    with pytest.raises(SlideError, match="empty") as exc_info:
        open_slide(path)
    _assert_one_line_naming(exc_info, "empty.svs")


def test_text_file_named_svs(tmp_path):
    path = tmp_path / "notes.svs"
    path.write_text("this is not a slide\n" * 10)
    with pytest.raises(SlideError, match="not a supported slide") as exc_info:
        open_slide(path)
    _assert_one_line_naming(exc_info, "notes.svs")


def test_unsupported_format(tmp_path):
    path = tmp_path / "scan.xyz"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(SlideError, match="not a supported slide") as exc_info:
        open_slide(path)
    _assert_one_line_naming(exc_info, "scan.xyz")


def test_corrupt_png(tmp_path):
    path = tmp_path / "broken.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 100)
    with pytest.raises(SlideError) as exc_info:
        open_slide(path)
    _assert_one_line_naming(exc_info, "broken.png")


def test_truncated_flat_tiff(tmp_path):
    image = np.random.default_rng(1).integers(0, 255, (800, 800, 3), dtype=np.uint8)
    full = tmp_path / "full.tif"
    tifffile.imwrite(full, image, photometric="rgb")
    cut = tmp_path / "cut.tif"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 3])
    with pytest.raises(SlideError) as exc_info:
        open_slide(cut)
    _assert_one_line_naming(exc_info, "cut.tif")


def test_zero_size_image(tmp_path):
    path = tmp_path / "zero.tif"
    tifffile.imwrite(path, np.zeros((0, 0), np.uint8))
    with pytest.raises(SlideError) as exc_info:
        open_slide(path)
    _assert_one_line_naming(exc_info, "zero.tif")


_PROBE = textwrap.dedent(
    """
    import sys
    from her2viewer.errors import SlideError
    from her2viewer.slide import open_slide
    try:
        slide = open_slide(sys.argv[1])
        for level, info in enumerate(slide.info.levels):
            for y in range(0, info.height, 512):
                for x in range(0, info.width, 512):
                    ds = info.downsample
                    slide.read_region((int(x * ds), int(y * ds)), level, (512, 512))
        print("READ-OK")
    except SlideError as exc:
        print("SLIDE-ERROR", exc)
    """
)


def _damaged_copies(source, tmp_path):
    data = bytearray(source.read_bytes())
    truncated = tmp_path / "truncated.svs"
    truncated.write_bytes(data[: len(data) // 2])
    rng = np.random.default_rng(7)
    flipped = bytearray(data)
    for position in rng.integers(1024, len(data), 400):
        flipped[position] ^= 1 << int(rng.integers(0, 8))
    bitflip = tmp_path / "bitflip.svs"
    bitflip.write_bytes(bytes(flipped))
    header = bytearray(data)
    header[8:64] = rng.bytes(56)
    bad_header = tmp_path / "bad_header.svs"
    bad_header.write_bytes(bytes(header))
    return [truncated, bitflip, bad_header]


@pytest.mark.parametrize("which", ["real", "synthetic"])
def test_damaged_svs_never_takes_the_process_down(tmp_path, cmu_svs, synthetic_case, which):
    source = cmu_svs if which == "real" else synthetic_case / "he.svs"
    for damaged in _damaged_copies(source, tmp_path):
        result = subprocess.run(
            [sys.executable, "-c", _PROBE, str(damaged)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, (
            f"{damaged.name}: exit {result.returncode} {result.stderr[-400:]}"
        )
        assert "READ-OK" in result.stdout or "SLIDE-ERROR" in result.stdout


def test_truncated_svs_is_a_slide_error(tmp_path, synthetic_case):
    data = (synthetic_case / "he.svs").read_bytes()
    cut = tmp_path / "cut.svs"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(SlideError) as exc_info, open_slide(cut) as slide:
        for y in range(0, slide.info.height, 256):
            slide.read_region((0, y), 0, (slide.info.width, 256))
    _assert_one_line_naming(exc_info, "cut.svs")


def test_cli_info_bad_input_exit_2(tmp_path, capsys):
    path = tmp_path / "notes.svs"
    path.write_text("not a slide")
    assert main(["info", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "notes.svs" in err
