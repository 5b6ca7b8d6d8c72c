"""Attention heatmaps: percentile and overlap maths by hand, and the slide pipeline."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
import torch
from torch import nn

from her2viewer.analysis.clam import (
    ClamOptions,
    analyse_clam,
    attention_scores,
    patch_score_map,
    predict_attention,
    score_to_percentile,
    to_percentiles,
)
from her2viewer.errors import ModelError
from her2viewer.features.encoders import torchscript_encoder
from her2viewer.jobs import JobContext
from her2viewer.models.clam import CLAM, ClamConfig, predict, save_clam_bundle
from her2viewer.slide import open_slide
from her2viewer.tissue import SegmentationParams, TissueSegmentation


def test_percentiles_by_hand():
    np.testing.assert_allclose(to_percentiles([3.0, 1.0, 2.0, 2.0]), [1.0, 0.25, 0.625, 0.625])
    # kind='rank': (below + below_or_equal + [tie]) * 50 / n
    np.testing.assert_allclose(score_to_percentile([2.5, 3.0, 0.0], [1, 2, 3, 4]), [0.5, 0.75, 0.0])


def test_overlapping_patches_are_averaged():
    coords = np.array([[0, 0], [2, 0]])
    out = patch_score_map(coords, [1.0, 0.0], 4, (8, 6), 1.0)
    assert out.shape == (6, 8)
    np.testing.assert_array_equal(out[0, :6], [1, 1, 0.5, 0.5, 0, 0])
    assert np.isnan(out[:, 6:]).all() and np.isnan(out[4:]).all()
    binary = patch_score_map(coords, [0.6, 0.4], 4, (8, 6), 1.0, binarize_threshold=0.5)
    np.testing.assert_array_equal(binary[0, :6], [1, 1, 0.5, 0.5, 0, 0])
    coarse = patch_score_map(coords * 4, [0.2, 0.8], 16, (32, 24), 4.0)
    np.testing.assert_allclose(coarse[0, :6], [0.2, 0.2, 0.5, 0.5, 0.8, 0.8])


def test_blur_and_tissue_mask():
    coords = np.array([[x, 0] for x in range(0, 16, 4)])
    blurred = patch_score_map(coords, [0, 0, 1, 1], 4, (16, 4), 1.0, blur=True)
    assert 0 < blurred[0, 7] < blurred[0, 8] < 1 and np.isfinite(blurred).all()
    mask = np.zeros((2, 8), bool)
    mask[:, :4] = True  # tissue covers level-0 x < 8 (2 level-0 px per mask px)
    seg = TissueSegmentation(mask, 2.0, 0, [], [], SegmentationParams())
    masked = patch_score_map(coords, [0.1, 0.2, 0.3, 0.4], 4, (16, 4), 1.0, tissue=seg)
    assert np.isfinite(masked[:, :8]).all() and np.isnan(masked[:, 8:]).all()


@pytest.mark.parametrize("standardize", [False, True])
@pytest.mark.parametrize("model_type", ["clam_sb", "clam_mb"])
def test_overlap_scores_against_block_map(model_type, standardize):
    torch.manual_seed(0)
    config = ClamConfig(
        model_type=model_type,
        n_classes=3,
        embed_dim=6,
        hidden_dim=8,
        attention_dim=4,
        standardize=standardize,
    )
    model = CLAM(config).eval()
    if standardize:  # stored statistics far from 0 / 1, as an untrained encoder's are
        model.feature_mean.fill_(3.0)
        model.feature_std.fill_(0.2)
    block = np.random.default_rng(0).normal(size=(10, 6)).astype(np.float32)
    over = np.random.default_rng(1).normal(size=(25, 6)).astype(np.float32)
    pred = predict(model, block)
    branch = pred.prediction if model_type == "clam_mb" else 0
    np.testing.assert_allclose(
        to_percentiles(pred.attention[branch]), attention_scores(model, pred)
    )
    raw_over = predict(model, over).attention[branch]
    np.testing.assert_allclose(predict_attention(model, over, pred.prediction), raw_over, atol=1e-6)
    expected = [
        np.mean([(pred.attention[branch] < a).mean(), (pred.attention[branch] <= a).mean()])
        for a in raw_over
    ]  # no ties: rank percentile is the midpoint
    np.testing.assert_allclose(attention_scores(model, pred, over), expected, atol=1e-6)


@pytest.fixture(scope="module")
def tiny_setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("heat")
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()
    )
    torch.jit.script(net.eval()).save(str(root / "enc.pt"))
    model = CLAM(ClamConfig(embed_dim=8, hidden_dim=16, attention_dim=8))
    bundle = save_clam_bundle(root / "bundle", model, {"class_names": ["negative", "positive"]})
    return root, torchscript_encoder(root / "enc.pt", input_size=16), bundle


def test_analyse_clam_end_to_end_and_cached(synthetic_case, tiny_setup):
    root, encoder, bundle = tiny_setup
    options = ClamOptions(magnification=5.0, patch_size=32, overlap=0.5, device="cpu", workers=2)
    calls = []
    with open_slide(synthetic_case / "he.svs") as slide:
        first = analyse_clam(
            slide,
            bundle,
            options,
            JobContext(listeners=[lambda p: calls.append(p.done)]),
            encoder=encoder,
            cache=root / "cache",
        )
        n_calls = len(calls)
        again = analyse_clam(
            slide,
            bundle,
            options,
            JobContext(listeners=[lambda p: calls.append(p.done)]),
            encoder=encoder,
            cache=root / "cache",
        )
    assert n_calls > 0 and len(calls) == n_calls  # second run reads the cached features
    np.testing.assert_array_equal(first.values, again.values)
    assert first.class_names == ["negative", "positive"]
    assert first.prediction.probabilities.sum() == pytest.approx(1.0, abs=1e-6)
    finite = first.values[np.isfinite(first.values)]
    assert finite.size and finite.min() >= 0 and finite.max() <= 1
    assert np.isnan(first.values).any()  # background stays empty
    assert len(first.patch_scores) > len(first.prediction.attention[0])  # overlapping patches
    top = first.top_patches(3)
    assert set(map(tuple, top)) <= set(map(tuple, first.coords))


def test_plain_checkpoint_needs_an_encoder(synthetic_case, tiny_setup, tmp_path):
    _, encoder, _ = tiny_setup
    model = CLAM(ClamConfig(embed_dim=12, hidden_dim=16, attention_dim=8))
    torch.save(model.state_dict(), tmp_path / "s_0_checkpoint.pt")
    with open_slide(synthetic_case / "he.svs") as slide:
        with pytest.raises(ModelError, match="does not say which encoder"):
            analyse_clam(slide, tmp_path / "s_0_checkpoint.pt", cache=tmp_path)
        with pytest.raises(ModelError, match="8-d features but the model expects 12"):
            analyse_clam(slide, tmp_path / "s_0_checkpoint.pt", encoder=encoder, cache=tmp_path)


def test_heatmap_fills_in_progressively(synthetic_case, tiny_setup, tmp_path):
    _, encoder, bundle = tiny_setup
    options = ClamOptions(magnification=5.0, patch_size=32, device="cpu", batch_size=16, workers=2)
    partial = []
    with open_slide(synthetic_case / "he.svs") as slide:
        final = analyse_clam(
            slide, bundle, options, encoder=encoder, cache=tmp_path, on_partial=partial.append
        )
    assert len(partial) >= 2
    assert len(partial[0].coords) == 16 < len(partial[-1].coords) == len(final.coords)
    np.testing.assert_array_equal(partial[-1].values, final.values)
    np.testing.assert_allclose(partial[-1].prediction.probabilities, final.prediction.probabilities)


def test_heatmap_verb_writes_png(synthetic_case, tiny_setup, tmp_path, capsys):
    import cv2

    from her2viewer.cli import main

    root, _, bundle = tiny_setup
    args = [
        "clam",
        "heatmap",
        str(synthetic_case / "he.svs"),
        "--model",
        str(bundle),
        "-o",
        str(tmp_path / "heat.png"),
        "--encoder",
        f"torchscript:{root / 'enc.pt'}",
        "--mag",
        "5",
        "--patch-size",
        "32",
        "--device",
        "cpu",
        "--workers",
        "2",
        "--blur",
    ]
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["prediction"] in ("negative", "positive") and summary["level"] == 1
    with open_slide(synthetic_case / "he.svs") as slide:
        level = slide.info.levels[1]
        base = slide.level_image(1)
    png = cv2.imread(str(tmp_path / "heat.png"))
    assert png.shape == (level.height, level.width, 3)
    assert np.abs(png[..., ::-1].astype(int) - base).max() > 50  # heat drawn over tissue
    assert (tmp_path / "heat.json").is_file()
    assert main([*args, "--tiff", str(tmp_path / "heat.tif")]) == 0
    capsys.readouterr()
    with tifffile.TiffFile(tmp_path / "heat.tif") as tif:
        page = tif.pages[0]
        meta = json.loads(page.description)
        assert page.shape[2] == 4
        rgba = page.asarray()
    assert rgba.shape[:2] == (
        round(2400 / meta["level0_downsample"]),
        round(3000 / meta["level0_downsample"]),
    )
    assert rgba[..., 3].any() and not rgba[..., 3].all()  # drawn on tissue only
    assert main([*args[:-1], "--level", "7"]) == 2
    assert "Level 7 does not exist" in capsys.readouterr().err


def test_overlay_tiff_pyramid(tmp_path):
    from her2viewer.overlay.export import write_overlay_tiff
    from her2viewer.overlay.layers import HeatmapLayer

    values = np.full((50, 70), np.nan, np.float32)
    values[10:40, 5:60] = np.linspace(0, 1, 55)[None, :]
    layer = HeatmapLayer("a", values=values, downsample=16.0)
    write_overlay_tiff(tmp_path / "o.tif", layer, (70 * 16, 50 * 16), 16.0, mpp=0.5, tile=16)
    with tifffile.TiffFile(tmp_path / "o.tif") as tif:
        levels = tif.series[0].levels
        shapes = [lv.shape for lv in levels]
        full = levels[0].asarray()
    assert shapes[:3] == [(50, 70, 4), (25, 35, 4), (12, 17, 4)] and shapes[-1][1] <= 16
    assert full[25, 30, 3] == 255 and full[0, 0, 3] == 0
    assert not list(tmp_path.glob("*.partial"))
