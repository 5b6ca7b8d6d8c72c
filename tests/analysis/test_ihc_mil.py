"""Seed 003's attention MIL on IHC and its stain-intensity baseline."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import skimage.data
import torch

from her2viewer.analysis.ihc_baseline import StainIntensityBaseline, read_labels
from her2viewer.analysis.ihc_mil import (
    attention_map,
    load_mil,
    predict_mil,
    resnet34_encoder,
    save_mil,
    train_ihc_mil,
)
from her2viewer.cli import main
from her2viewer.errors import ModelError, StainError


def _bags(n_per_score: int, seed: int):
    """Bags of 20 noise tiles; a score-s bag has 3 tiles carrying signal s in dimension 0."""
    rng = np.random.default_rng(seed)
    bags, scores = [], []
    for score in range(4):
        for _ in range(n_per_score):
            bag = rng.normal(0, 0.3, (20, 16)).astype(np.float32)
            bag[:3, 0] += 3.0 * score
            bag[:3, 1] += 2.0
            bags.append(bag)
            scores.append(score)
    statuses = ["positive" if s >= 2 else "negative" for s in scores]
    return bags, scores, statuses


def test_mil_learns_and_attends_to_signal_tiles():
    torch.set_num_threads(1)
    bags, scores, statuses = _bags(4, 0)
    model = train_ihc_mil(bags, scores, statuses, epochs=60, lr=5e-3)
    test_bags, test_scores, test_statuses = _bags(2, 1)
    predictions = [predict_mil(model, b) for b in test_bags]
    correct = sum(p.score == s for p, s in zip(predictions, test_scores, strict=True))
    assert correct >= 6  # of 8 held-out bags; neighbours 2+/3+ may swap
    assert [p.status for p in predictions] == test_statuses
    for p, score in zip(predictions, test_scores, strict=True):
        assert p.attention.sum() == pytest.approx(1.0, abs=1e-5)
        if score > 0:
            assert p.attention[:3].sum() > 0.5  # the three signal tiles of 20


def test_attention_map_places_tiles():
    heat, downsample = attention_map(
        np.array([[0, 0], [448, 224]]), np.array([0.2, 0.8]), 224, 700, 500
    )
    assert downsample == 224 and heat.shape == (3, 4)
    assert heat[0, 0] == 0 and heat[1, 2] == 1 and np.isnan(heat[2, 3])


def test_mil_bundle_round_trip_and_cli(tmp_path, capsys):
    encoder = resnet34_encoder(random_seed=3)
    bags, scores, statuses = _bags(1, 0)
    model = train_ihc_mil([np.pad(b, ((0, 0), (0, 496))) for b in bags], scores, statuses, 2)
    bundle = save_mil(tmp_path / "mil", model, encoder, {"test": True})
    loaded, loaded_encoder = load_mil(bundle)
    assert loaded_encoder.provenance == {"weights": "random", "seed": 3}
    image = tmp_path / "ihc.png"
    tiled = np.tile(skimage.data.immunohistochemistry(), (2, 2, 1))  # 1024 px: 16 tiles
    cv2.imwrite(str(image), tiled[..., ::-1])
    heatmap = tmp_path / "attention.png"
    code = main(["ihc", "predict-mil", str(bundle), str(image), "--heatmap", str(heatmap)])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert result["ihc_score"] in (0, 1, 2, 3) and result["n_tiles"] >= 1
    assert heatmap.exists()


def test_resnet34_needs_weights(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(ModelError):
        resnet34_encoder()
    bad = tmp_path / "bad.pt"
    torch.save({"conv1.weight": torch.zeros(1)}, bad)
    with pytest.raises(ModelError):
        resnet34_encoder(bad)
    with pytest.raises(ModelError):
        train_ihc_mil([], [], [])


def test_stain_intensity_baseline(tmp_path, capsys):
    descriptors = [0.007, 0.008, 0.02, 0.03, 0.03, 0.045, 0.11, 0.12]
    scores = [0, 0, 1, 1, 2, 2, 3, 3]
    statuses = ["negative"] * 4 + ["positive"] * 4
    model = StainIntensityBaseline.fit(descriptors, scores, statuses)
    predicted_scores, predicted_status = model.predict([0.005, 0.2])
    assert predicted_scores.tolist() == [0, 3]
    assert predicted_status.tolist() == ["negative", "positive"]
    again = StainIntensityBaseline.load(model.save(tmp_path / "b.json"))
    assert again.predict(descriptors)[0].tolist() == model.predict(descriptors)[0].tolist()
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(StainError):
        StainIntensityBaseline.load(tmp_path / "x.json")
    with pytest.raises(StainError):
        read_labels(tmp_path / "missing.csv")
    assert main(["ihc", "train-baseline", str(tmp_path / "missing.csv"), "-o", "m.json"]) == 2
    assert "\n" not in capsys.readouterr().err.strip()


def test_cli_trains_and_predicts_on_plain_images(tmp_path, capsys):
    """train-baseline / predict-baseline / train-mil on two 1024 px IHC images."""
    from her2viewer.stain import HDAB, combine_stains, separate_stains

    stained = np.tile(skimage.data.immunohistochemistry(), (2, 2, 1))
    stains = separate_stains(stained, HDAB)
    stains[..., 1] = 0
    unstained = combine_stains(stains, HDAB)
    for name, image in (("pos.png", stained), ("neg.png", unstained)):
        cv2.imwrite(str(tmp_path / name), image[..., ::-1])
    labels = tmp_path / "labels.csv"
    labels.write_text(
        "case_id,ihc_path,ihc_score,her2_status\na,pos.png,3,positive\nb,neg.png,0,negative\n"
    )
    model = tmp_path / "baseline.json"
    assert main(["ihc", "train-baseline", str(labels), "-o", str(model)]) == 0
    assert main(["ihc", "predict-baseline", str(model), str(tmp_path / "pos.png")]) == 0
    assert json.loads(capsys.readouterr().out)["her2_status"] == "positive"
    bundle = tmp_path / "mil.zip"
    args = ["ihc", "train-mil", str(labels), "-o", str(bundle), "--random-weights", "1"]
    args += ["--features-dir", str(tmp_path / "features"), "--epochs", "2"]
    assert main(args) == 0
    assert bundle.exists() and len(list((tmp_path / "features").glob("*.h5"))) == 2


def test_cli_unwritable_map_is_one_line(tmp_path, capsys):
    image = tmp_path / "ihc.png"
    cv2.imwrite(str(image), skimage.data.immunohistochemistry()[..., ::-1])
    blocker = tmp_path / "notes.txt"
    blocker.write_text("a file, not a folder")
    missing = blocker / "map.png"
    assert main(["ihc", "score", str(image), "--map", str(missing)]) == 2
    err = capsys.readouterr().err.strip()
    assert "map" in err and "\n" not in err
