"""Image filters (PyRadiomics image types) on hand-checkable volumes, names and bad specs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from her2viewer.cli import main
from her2viewer.errors import RadiomicsError
from her2viewer.radiomics.features import RadiomicsSettings, extract_features
from her2viewer.radiomics.filters import (
    exponential_image,
    filtered_images,
    gradient_image,
    log_images,
    logarithm_image,
    parse_filter_spec,
    square_image,
    squareroot_image,
    wavelet_images,
)
from her2viewer.radiomics.params import read_params, settings_for_features
from her2viewer.radiomics.predict import predict_case
from her2viewer.radiomics.volume import Volume, load_volume, write_nrrd

DATA = Path(__file__).resolve().parents[1] / "data" / "radiomics"
WAVELET_ORDER = ["LLH", "LHL", "LHH", "HLL", "HLH", "HHL", "HHH", "LLL"]


def _blob(spacing: tuple[float, float, float], width_mm: float, half_mm: float = 20.0) -> Volume:
    """A unit-height Gaussian blob of standard deviation ``width_mm`` at the centre."""
    axes = [np.arange(-half_mm, half_mm + 1e-9, s) for s in spacing]
    z, y, x = np.meshgrid(*axes, indexing="ij")
    return Volume(np.exp(-(x**2 + y**2 + z**2) / (2 * width_mm**2)), spacing)


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (2.0, 1.0, 0.8)])
def test_log_of_gaussian_blob_matches_the_analytic_value(spacing):
    # blob of s0 blurred by sigma is a Gaussian of S^2 = s0^2 + sigma^2 and height (s0/S)^3;
    # its Laplacian at the centre is -3 (s0/S)^3 / S^2, times sigma^2 when normalised
    s0, sigma = 3.0, 2.0
    blob = _blob(spacing, s0)
    [(name, response)] = list(log_images(blob, (sigma,)))
    assert name == "log-sigma-2-0-mm-3D"
    centre = tuple(n // 2 for n in blob.array.shape)
    big = s0**2 + sigma**2
    expected = -3 * sigma**2 * s0**3 / big**2.5
    assert response.array[centre] == pytest.approx(expected, rel=0.03)
    assert np.unravel_index(np.argmin(response.array), response.array.shape) == centre
    assert response.spacing == blob.spacing


def test_log_of_a_constant_is_zero_up_to_the_borders():
    flat = Volume(np.full((8, 9, 10), 70, np.int16), (1.0, 0.7, 0.7))
    [(_, response)] = list(log_images(flat, (1.0,)))
    assert np.abs(response.array).max() < 1e-9


def test_log_refuses_a_volume_smaller_than_its_kernel():
    thin = Volume(np.zeros((3, 20, 20)), (1.0, 1.0, 1.0))
    with pytest.raises(RadiomicsError, match="too small for the LoG"):
        list(log_images(thin, (1.0,)))


def test_wavelet_of_a_constant_keeps_only_the_approximation():
    value = 5.0
    flat = Volume(np.full((7, 8, 9), value), (1.0, 1.0, 1.0))  # odd sizes are padded, cropped
    bands = dict(wavelet_images(flat))
    assert list(bands) == [f"wavelet-{b}" for b in WAVELET_ORDER]
    for name, band in bands.items():
        assert band.array.shape == flat.array.shape
        # coif1's low-pass filter sums to sqrt(2): three axes give 2^1.5
        expected = value * 2**1.5 if name == "wavelet-LLL" else 0.0
        np.testing.assert_allclose(band.array, expected, atol=1e-9)


def test_wavelet_letters_follow_x_y_z():
    # a pattern varying only along x: only bands high-pass in x (first letter H) respond
    x = np.tile(np.array([0.0, 10.0, 0.0, 30.0, 5.0, 0.0, 20.0, 0.0]), (4, 6, 1))
    bands = dict(wavelet_images(Volume(x, (1.0, 1.0, 1.0)), wavelet="haar"))
    for name, band in bands.items():
        letters = name.split("-")[1]
        responds = np.abs(band.array).max() > 1e-9
        assert responds == (letters[0] == "H" and letters[1:] == "LL" or letters == "LLL"), name


def test_wavelet_levels_are_named_like_pyradiomics():
    vol = Volume(np.random.default_rng(0).normal(size=(8, 8, 8)), (1.0, 1.0, 1.0))
    names = [n for n, _ in wavelet_images(vol, "haar", level=2, start_level=1)]
    assert names[:7] == [f"wavelet-{b}" for b in WAVELET_ORDER[:7]]
    assert names[7:14] == [f"wavelet2-{b}" for b in WAVELET_ORDER[:7]]
    assert names[14:] == ["wavelet2-LLL"]


def test_intensity_mappings_by_hand():
    vol = Volume(np.array([-4.0, -1.0, 0.0, 1.0, 4.0]).reshape(1, 1, 5), (1.0, 1.0, 1.0))
    np.testing.assert_allclose(square_image(vol).array.ravel(), [4, 0.25, 0, 0.25, 4])
    np.testing.assert_allclose(squareroot_image(vol).array.ravel(), [-4, -2, 0, 2, 4])
    expected_log = np.array([-1, -np.log(2) / np.log(5), 0, np.log(2) / np.log(5), 1]) * 4
    np.testing.assert_allclose(logarithm_image(vol).array.ravel(), expected_log)
    np.testing.assert_allclose(
        exponential_image(vol).array.ravel(), np.exp(np.log(4) / 4 * vol.array.ravel())
    )


def test_gradient_of_a_ramp_uses_the_spacing():
    ramp = np.broadcast_to(2.0 * np.arange(6), (4, 5, 6)).copy()  # +2 per voxel along x
    vol = Volume(ramp, (1.0, 1.0, 0.5))
    magnitude = gradient_image(vol).array
    np.testing.assert_allclose(magnitude[:, :, 1:-1], 4.0)  # 2 / 0.5 mm
    np.testing.assert_allclose(magnitude[:, :, [0, -1]], 2.0)  # the edge voxel repeats
    np.testing.assert_allclose(gradient_image(vol, False).array[:, :, 1:-1], 2.0)


@pytest.fixture(scope="module")
def small_case():
    rng = np.random.default_rng(1)
    image = rng.normal(100, 20, (10, 24, 24)).round().astype(np.int16)
    mask = np.zeros(image.shape, np.uint8)
    mask[3:8, 6:18, 5:17] = 1
    return Volume(image, (2.0, 0.8, 0.8)), Volume(mask, (2.0, 0.8, 0.8))


def test_feature_names_carry_the_image_type_prefix(small_case):
    types = {"original": {}, "log": {"sigma": (1.0, 2.5)}, "wavelet": {}, "square": {}}
    settings = RadiomicsSettings(classes=("shape", "firstorder", "glcm"), image_types=types)
    features = extract_features(*small_case, settings)
    prefixes = {name.split("_")[0] for name in features}
    assert prefixes == {
        "original", "log-sigma-1-0-mm-3D", "log-sigma-2-5-mm-3D", "square",
        *(f"wavelet-{b}" for b in WAVELET_ORDER),
    }  # fmt: skip
    assert "log-sigma-1-0-mm-3D_firstorder_Mean" in features
    assert "wavelet-LLH_glcm_Contrast" in features
    assert all(n.startswith("original_") for n in features if "_shape_" in n)  # shape once
    # original features are unchanged by adding filters
    plain = extract_features(*small_case, RadiomicsSettings(classes=("firstorder",)))
    assert all(features[k] == v for k, v in plain.items())
    # settings recovered from the names compute the same features
    again = extract_features(*small_case, settings_for_features(list(features)))
    assert set(again) == set(features)
    assert again["wavelet-HHH_glcm_Contrast"] == pytest.approx(
        features["wavelet-HHH_glcm_Contrast"]
    )


def test_filter_specs_parse_like_the_command_line():
    assert parse_filter_spec("log:sigma=1,3") == ("log", {"sigma": (1.0, 3.0)})
    assert parse_filter_spec("Wavelet") == (
        "wavelet", {"wavelet": "coif1", "level": 1, "start_level": 0}
    )  # fmt: skip
    assert parse_filter_spec("wavelet:wavelet=haar,level=2")[1]["level"] == 2
    assert parse_filter_spec("gradient:gradientUseSpacing=false")[1] == {
        "gradientUseSpacing": False
    }


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("blur", "Unknown image filter 'blur'"),
        ("log", "needs sigma"),
        ("log:sigma=0", "positive numbers"),
        ("log:sgima=1", "has no parameter 'sgima'"),
        ("log:1,3", "Cannot read filter"),
        ("wavelet:level=0", "integer >= 1"),
        ("square:sigma=1", "it takes no parameters"),
    ],
)
def test_bad_filter_specs_raise_one_line_errors(spec, message):
    with pytest.raises(RadiomicsError, match=message) as info:
        parse_filter_spec(spec)
    assert "\n" not in str(info.value)


def test_cli_filters_and_bad_spec(tmp_path, small_case, capsys):
    image, mask = (
        write_nrrd(tmp_path / "i.nrrd", small_case[0]),
        write_nrrd(tmp_path / "m.nrrd", small_case[1]),
    )
    args = ["radiomics", "extract", str(image), str(mask), "--classes", "firstorder", "--json"]
    assert main([*args, "--filter", "log:sigma=1,3", "--filter", "wavelet:wavelet=haar"]) == 0
    names = json.loads(capsys.readouterr().out)
    assert "log-sigma-3-0-mm-3D_firstorder_Mean" in names and "wavelet-HHL_firstorder_Mean" in names
    assert "original_firstorder_Mean" in names
    assert main([*args, "--filter", "wavelet:wavelet=nope"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Unknown wavelet 'nope'" in err


def test_params_file_yaml_and_json(tmp_path, small_case):
    yaml_file = tmp_path / "params.yaml"
    yaml_file.write_text(
        "imageType:\n  Original: {}\n  LoG: {sigma: [1.0]}\n  Wavelet: {}\n"
        "featureClass:\n  shape:\n  firstorder: [Mean, Median]\n"
        "setting:\n  binWidth: 10\n  wavelet: haar\n  additionalInfo: true\n"
    )
    settings = read_params(yaml_file)
    assert settings.bin_width == 10 and settings.classes == ("firstorder", "shape")
    assert settings.image_types["wavelet"]["wavelet"] == "haar"  # from the shared settings
    features = extract_features(*small_case, settings)
    assert {n.split("_", 2)[2] for n in features if "_firstorder_" in n} == {"Mean", "Median"}
    json_file = tmp_path / "params.json"
    json_file.write_text(json.dumps({"imageType": {"Square": {}}, "setting": {"label": 1}}))
    assert list(read_params(json_file).image_types) == ["square"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("setting: {resampledPixelSpacing: [1, 1, 1]}", "resampledPixelSpacing"),
        ("setting: {binwidth: 5}", "unknown setting 'binwidth'"),
        ("featureClass: {texture: }", "unknown feature class 'texture'"),
        ("imageType: {LBP3D: {}}", "Unknown image filter 'LBP3D'"),
        ("imagetype: {}", "unknown section 'imagetype'"),
        ("imageType: [Original]", "must be mappings"),
        ("imageType: {Original: {}", "Cannot read parameter file"),
    ],
)
def test_bad_params_files(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(RadiomicsError, match=message):
        read_params(path)


def test_filtered_images_keeps_the_configured_order(small_case):
    order = [n for n, _ in filtered_images(small_case[0], {"gradient": {}, "original": {}})]
    assert order == ["gradient", "original"]


def test_predict_cli_reads_the_filters_from_the_model(radiomics_model, capsys):
    image, mask = DATA / "breast1_image.nrrd", DATA / "breast1_label.nrrd"
    assert (
        main(["radiomics", "predict", str(radiomics_model), str(image), str(mask), "--json"]) == 0
    )
    result = json.loads(capsys.readouterr().out)
    expected = predict_case(radiomics_model, load_volume(image), load_volume(mask))
    assert result["p_positive"] == pytest.approx(expected.probability)
    assert result["class"] == expected.label
    # the model needs wavelet-LLH: without the wavelet filter the features are missing
    args = [
        "radiomics",
        "predict",
        str(radiomics_model),
        str(image),
        str(mask),
        "--filter",
        "log:sigma=1",
    ]
    assert main(args) == 2
    assert "wavelet-LLH_firstorder_Mean' is missing" in capsys.readouterr().err
