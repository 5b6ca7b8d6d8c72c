"""Opening every supported kind of slide through one API."""

from __future__ import annotations

import json
import threading

import cv2
import numpy as np
import pytest
import tifffile
from PIL import Image

from her2viewer.errors import SlideError
from her2viewer.slide import open_slide
from her2viewer.slide.image_backend import ImageSlide


def test_real_svs_info(cmu_svs):
    with open_slide(cmu_svs) as slide:
        info = slide.info
        assert info.vendor == "aperio"
        assert (info.width, info.height) == (2220, 2967)
        assert info.mpp_x == pytest.approx(0.499, abs=1e-3)
        assert info.objective_power == 20
        assert info.objective_power_estimate is None
        assert set(info.associated_images) == {"label", "macro", "thumbnail"}
        assert info.levels[0].downsample == 1.0
        assert len(info.fingerprint) == 16


def test_real_svs_read_region_and_outside_is_white(cmu_svs):
    with open_slide(cmu_svs) as slide:
        tile = slide.read_region((1000, 1000), 0, (256, 128))
        assert tile.shape == (128, 256, 3) and tile.dtype == np.uint8
        assert tile.std() > 5  # real tissue, not a blank
        outside = slide.read_region((5000, 5000), 0, (64, 64))
        assert (outside == 255).all()
        label = slide.associated_image("label")
        assert label.ndim == 3 and label.shape[2] == 3


def test_thumbnail_keeps_aspect_ratio(cmu_svs):
    with open_slide(cmu_svs) as slide:
        thumb = slide.thumbnail(300)
    assert max(thumb.shape[:2]) == 300
    assert thumb.shape[1] / thumb.shape[0] == pytest.approx(2220 / 2967, rel=0.02)


def test_missing_associated_image_is_a_slide_error(cmu_svs):
    with open_slide(cmu_svs) as slide, pytest.raises(SlideError, match="no associated image"):
        slide.associated_image("barcode")


def test_synthetic_tiff_opens_as_aperio_pyramid(synthetic_case):
    with open_slide(synthetic_case / "he.svs") as slide:
        info = slide.info
        assert info.vendor == "aperio"
        assert (info.width, info.height) == (3000, 2400)
        assert info.mpp_x == pytest.approx(0.5)
        assert info.objective_power == 20
        assert [round(level.downsample) for level in info.levels] == [1, 4]
        assert set(info.associated_images) == {"label", "macro", "thumbnail"}
        assert slide.level_for_magnification(20) == 0
        assert slide.level_for_magnification(5) == 1
        assert slide.level_for_magnification(10) == 0
        assert slide.best_level_for_downsample(100) == 1


def _gradient(width=600, height=400):
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([x % 256, y % 256, (x + y) % 256], -1).astype(np.uint8)


@pytest.mark.parametrize("suffix", [".png", ".tif", ".bmp"])
def test_plain_lossless_images_read_back_exactly(tmp_path, suffix):
    image = _gradient(1300, 900)
    path = tmp_path / f"core{suffix}"
    if suffix == ".tif":
        tifffile.imwrite(path, image, photometric="rgb")
    else:
        Image.fromarray(image).save(path)
    with open_slide(path) as slide:
        assert isinstance(slide, ImageSlide)
        assert (slide.info.width, slide.info.height) == (1300, 900)
        assert slide.info.level_count >= 2
        np.testing.assert_array_equal(
            slide.read_region((100, 50), 0, (64, 32)), image[50:82, 100:164]
        )
        assert slide.info.mpp_x is None and slide.info.objective_power is None
        half = slide.read_region((0, 0), 1, (650, 450))
        assert (
            np.abs(
                half.astype(int) - cv2.resize(image, (650, 450), interpolation=cv2.INTER_AREA)
            ).max()
            <= 1
        )


def test_jpeg_tma_core_opens(tmp_path):
    path = tmp_path / "tma.jpg"
    Image.fromarray(_gradient()).save(path, quality=95)
    with open_slide(path) as slide:
        assert slide.info.vendor == "image"
        assert slide.read_region((0, 0), 0, (600, 400)).shape == (400, 600, 3)


def test_png_alpha_is_composited_on_white(tmp_path):
    rgba = np.zeros((600, 600, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:300, :, 3] = 255  # top half opaque red-ish, bottom half transparent
    path = tmp_path / "alpha.png"
    Image.fromarray(rgba).save(path)
    with open_slide(path) as slide:
        region = slide.read_region((0, 0), 0, (600, 600))
    assert tuple(region[10, 10]) == (200, 0, 0)
    assert tuple(region[500, 10]) == (255, 255, 255)


def test_grey_and_16_bit_images(tmp_path):
    grey16 = (np.arange(600 * 600, dtype=np.uint32).reshape(600, 600) % 65536).astype(np.uint16)
    path = tmp_path / "grey16.tif"
    tifffile.imwrite(path, grey16)
    with open_slide(path) as slide:
        region = slide.read_region((0, 0), 0, (600, 600))
    assert region.shape == (600, 600, 3)
    assert (region[..., 0] == region[..., 2]).all()
    assert region[-1, -1, 0] == round(grey16[-1, -1] / 65535 * 255)


def test_tiff_resolution_gives_mpp_but_screen_dpi_does_not(tmp_path):
    scanner = tmp_path / "scanner.tif"
    tifffile.imwrite(
        scanner,
        _gradient(),
        photometric="rgb",
        resolution=(20000, 20000),
        resolutionunit="CENTIMETER",
    )
    with open_slide(scanner) as slide:
        assert slide.info.mpp_x == pytest.approx(0.5)
        assert slide.info.objective_power is None
        assert slide.info.objective_power_estimate == pytest.approx(20.0)
    screen = tmp_path / "screen.png"
    Image.fromarray(_gradient()).save(screen, dpi=(72, 72))
    with open_slide(screen) as slide:
        assert slide.info.mpp_x is None
        with pytest.raises(SlideError, match="neither objective power nor microns per pixel"):
            slide.level_for_magnification(20)


def test_fingerprint_is_stable_and_content_based(tmp_path, synthetic_cohort):
    cohort = synthetic_cohort.parent
    with (
        open_slide(cohort / "case000" / "he.svs") as a,
        open_slide(cohort / "case000" / "he.svs") as b,
    ):
        assert a.info.fingerprint == b.info.fingerprint
    with open_slide(cohort / "case001" / "he.svs") as c:
        assert c.info.fingerprint != a.info.fingerprint


def test_info_json_fields(synthetic_case):
    with open_slide(synthetic_case / "ihc.svs") as slide:
        data = json.loads(json.dumps(slide.info.to_json_dict()))
    for key in (
        "vendor",
        "width",
        "height",
        "levels",
        "mpp_x",
        "mpp_y",
        "objective_power",
        "associated_images",
    ):
        assert key in data
    assert data["levels"][1].keys() == {"width", "height", "downsample"}


def test_region_arguments_are_checked(cmu_svs):
    with open_slide(cmu_svs) as slide:
        with pytest.raises(ValueError):
            slide.read_region((0, 0), 3, (10, 10))
        with pytest.raises(ValueError):
            slide.read_region((0, 0), 0, (0, 10))


def test_concurrent_reads_match_serial_reads(synthetic_case):
    rng = np.random.default_rng(0)
    locations = [(int(x), int(y)) for x, y in rng.integers(0, 2700, (48, 2))]
    with open_slide(synthetic_case / "he.svs") as slide:
        expected = [slide.read_region(loc, 0, (256, 256)) for loc in locations]
        results: dict[int, np.ndarray] = {}
        errors: list[BaseException] = []

        def worker(indices):
            try:
                for i in indices:
                    results[i] = slide.read_region(locations[i], 0, (256, 256))
            except BaseException as exc:  # noqa: BLE001 - collected for the assertion
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(range(k, 48, 4),)) for k in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert not errors
    for i, tile in enumerate(expected):
        np.testing.assert_array_equal(results[i], tile)


@pytest.mark.parametrize("level", [0, 1])
def test_level_image_read_in_bands_equals_one_read(synthetic_case, monkeypatch, level):
    import her2viewer.slide.base as base

    with open_slide(synthetic_case / "he.svs") as slide:
        info = slide.info.levels[level]
        whole = slide.read_region((0, 0), level, (info.width, info.height))
        monkeypatch.setattr(base, "BAND_PIXELS", info.width * info.height // 3)
        monkeypatch.setattr(base.os, "cpu_count", lambda: 3)
        np.testing.assert_array_equal(slide.level_image(level), whole)


def _tiles(image, encode):
    for y in range(0, image.shape[0], 256):
        for x in range(0, image.shape[1], 256):
            tile = np.full((256, 256, 3), 255, np.uint8)
            part = image[y : y + 256, x : x + 256]
            tile[: part.shape[0], : part.shape[1]] = part
            yield encode(tile)


def _tissue_like(width=768, height=512):
    rng = np.random.default_rng(0)
    image = np.full((height, width, 3), 235, np.uint8)
    image[100:400, 100:600] = (200, 120, 180)
    return (image + rng.integers(0, 12, image.shape)).astype(np.uint8)


def test_jpeg2000_svs(tmp_path):
    """Aperio SVS with JPEG 2000 tiles (compression 33005, as Aperio's J2K/KDU files)."""
    import imagecodecs

    image = _tissue_like()
    path = tmp_path / "j2k.svs"
    description = (
        "Aperio Image Library v12.0.15 \r\n768x512 (256x256) J2K/KDU Q=70|AppMag = 40|MPP = 0.25"
    )
    with tifffile.TiffWriter(path) as tif:
        tif.write(
            _tiles(image, lambda t: imagecodecs.jpeg2k_encode(t, level=90, codecformat="J2K")),
            shape=image.shape, dtype=np.uint8, tile=(256, 256), compression=33005,
            photometric="rgb", description=description, metadata=None,
        )  # fmt: skip
    with open_slide(path) as slide:
        assert slide.info.vendor == "aperio"
        assert slide.info.objective_power == 40 and slide.info.mpp_x == pytest.approx(0.25)
        region = slide.read_region((150, 150), 0, (100, 100)).astype(float)
    assert np.abs(region.mean(axis=(0, 1)) - image[150:250, 150:250].mean(axis=(0, 1))).max() < 3


def test_generic_tiled_tiff(tmp_path):
    image = _tissue_like(1100, 700)
    path = tmp_path / "scan.tif"
    with tifffile.TiffWriter(path) as tif:
        tif.write(image, tile=(256, 256), compression="jpeg", photometric="rgb", metadata=None)
        tif.write(
            image[::4, ::4].copy(),
            tile=(256, 256),
            compression="jpeg",
            photometric="rgb",
            metadata=None,
            subfiletype=1,
        )
    with open_slide(path) as slide:
        assert slide.info.vendor == "generic-tiff"
        assert (slide.info.width, slide.info.height) == (1100, 700)
        assert slide.info.mpp_x is None and slide.info.objective_power is None
        region = slide.read_region((120, 120), 0, (64, 64)).astype(float)
    assert np.abs(region.mean(axis=(0, 1)) - image[120:184, 120:184].mean(axis=(0, 1))).max() < 4
