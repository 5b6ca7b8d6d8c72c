"""Per-slide settings: image type and pixel size stored by fingerprint, applied on open."""

import cv2
import numpy as np
import pytest

from her2viewer.errors import OutputError, SlideError
from her2viewer.paths import data_dir
from her2viewer.slide import open_slide
from her2viewer.slide.settings import (
    SlideSettings,
    apply_pixel_size,
    load_settings,
    save_settings,
    settings_path,
)
from tests.reliability.conftest import leftovers


@pytest.fixture()
def plain_image(tmp_path):
    """A PNG without a pixel size (no pHYs chunk)."""
    path = tmp_path / "scan.png"
    image = np.random.default_rng(1).integers(0, 255, (600, 800, 3), dtype=np.uint8)
    cv2.imwrite(str(path), image)
    return path


def test_settings_round_trip_under_the_data_folder(plain_image):
    with open_slide(plain_image) as slide:
        fingerprint = slide.info.fingerprint
    assert load_settings(fingerprint) == SlideSettings()
    path = save_settings(fingerprint, SlideSettings("fluorescence", 0.325))
    assert path == data_dir() / "slides" / f"{fingerprint}.json" and not leftovers(path.parent)
    assert load_settings(fingerprint) == SlideSettings("fluorescence", 0.325)


def test_a_stored_pixel_size_is_applied_when_a_file_without_one_opens(plain_image):
    with open_slide(plain_image) as slide:
        assert slide.info.mpp_x is None and slide.info.magnification is None
        save_settings(slide.info.fingerprint, SlideSettings(mpp=0.5))
    with open_slide(plain_image) as slide:
        info = slide.info
    assert (info.mpp_x, info.mpp_y, info.mpp_set_by_user) == (0.5, 0.5, True)
    assert info.magnification == 20.0  # estimated from the user's pixel size
    assert slide.downsample_for_magnification(10) == pytest.approx(2.0)


def test_a_pixel_size_the_file_records_is_never_replaced(cmu_svs):
    with open_slide(cmu_svs) as slide:
        recorded = slide.info.mpp_x
        save_settings(slide.info.fingerprint, SlideSettings(mpp=3.0))
    with open_slide(cmu_svs) as slide:
        assert slide.info.mpp_x == recorded and not slide.info.mpp_set_by_user
        apply_pixel_size(slide, 3.0)
        assert slide.info.mpp_x == recorded


def test_clearing_the_pixel_size_takes_it_away(plain_image):
    with open_slide(plain_image) as slide:
        apply_pixel_size(slide, 0.25)
        assert slide.info.mpp_x == 0.25
        apply_pixel_size(slide, None)
        assert slide.info.mpp_x is None and not slide.info.mpp_set_by_user
        assert slide.info.objective_power_estimate is None


@pytest.mark.parametrize("text", ["{not json", '{"mpp": -1}', '["a"]', '{"image_type": "x"}'])
def test_a_damaged_settings_file_is_ignored_and_the_slide_opens(plain_image, text):
    with open_slide(plain_image) as slide:
        fingerprint = slide.info.fingerprint
    path = settings_path(fingerprint)
    path.parent.mkdir(exist_ok=True)
    path.write_text(text)
    assert load_settings(fingerprint) == SlideSettings()
    with open_slide(plain_image) as slide:
        assert slide.info.mpp_x is None


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"mpp": 0.0}, "outside"),
        ({"mpp": float("nan")}, "outside"),
        ({"mpp": 500.0}, "outside"),
        ({"image_type": "darkfield"}, "is not one of"),
    ],
)
def test_bad_settings_are_refused_in_one_sentence(changes, fragment):
    with pytest.raises(SlideError, match=fragment) as error:
        SlideSettings(**changes)
    assert "\n" not in str(error.value)


def test_an_unwritable_data_folder_is_one_sentence(plain_image, monkeypatch, tmp_path):
    blocked = tmp_path / "data"
    blocked.mkdir()
    (blocked / "slides").write_text("a file where the folder should be")
    monkeypatch.setenv("HER2VIEWER_DATA", str(blocked))
    with pytest.raises(OutputError, match="slides"):
        save_settings("abc123", SlideSettings(mpp=0.5))
