"""HER2Net training: folds, augmentation, labels, bundle round trip, a short real training."""

from __future__ import annotations

import csv
import json
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from her2viewer.analysis.her2net import ihc_high_mask
from her2viewer.errors import ModelError
from her2viewer.jobs import run_inline
from her2viewer.models.her2net.data import (
    TileSet,
    case_tiles,
    crop_mask,
    read_training_cohort,
    strong_label,
)
from her2viewer.models.her2net.demo_bundle import truth_tile_labels
from her2viewer.models.her2net.ensemble import fit_integrated
from her2viewer.models.her2net.model import load_her2net, save_her2net
from her2viewer.models.her2net.networks import (
    CLASSIFIERS,
    SEGMENTERS,
    build_segmenter,
    build_tile_classifier,
)
from her2viewer.models.her2net.training import (
    Her2NetTrainConfig,
    augment,
    slide_folds,
    train_her2net,
)
from her2viewer.tissue.masks import read_mask

HELD_OUT = ("b/case003", "b/case004")  # one negative (IHC 0) and one positive (IHC 3+) case


@contextmanager
def one_thread():
    """One torch thread: much faster than two on a loaded 2-core machine."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def tiny_config(**changes) -> Her2NetTrainConfig:
    base = Her2NetTrainConfig(
        magnification=20.0,
        tile_size=256,
        input_size=16,
        segmenter={"arch": "unet", "width": 4, "depth": 2},
        classifier={"arch": "resnet18", "width": 4},
        integrated_grid={"n_estimators": [20], "max_depth": [3]},
        segmenter_epochs=6,
        classifier_epochs=10,
        patience=10,
        lr=3e-3,
        device="cpu",
    )
    for key, value in changes.items():
        setattr(base, key, value)
    return base


@pytest.fixture(scope="session")
def her2net_cohorts(synthetic_cohort, ihc_cohort, tmp_path_factory):
    """12 synthetic cases (6 HER2-positive) from two cohorts: 10 to train, 2 held out."""
    root = tmp_path_factory.mktemp("her2net_cohort")
    rows = []
    for prefix, labels in (("a", synthetic_cohort), ("b", ihc_cohort)):
        with labels.open(newline="") as handle:
            for row in csv.DictReader(handle):
                for key in ("he_path", "ihc_path"):
                    row[key] = str(labels.parent / row[key])
                row["case_id"] = f"{prefix}/{row['case_id']}"
                row["patient_id"] = f"{prefix}{row['patient_id']}"
                rows.append(row)
    train = [r for r in rows if r["case_id"] not in HELD_OUT]
    test = [r for r in rows if r["case_id"] in HELD_OUT]
    assert {r["her2_status"] for r in test} == {"positive", "negative"}
    paths = []
    for name, subset in (("train.csv", train), ("heldout.csv", test)):
        with (root / name).open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(subset)
        paths.append(root / name)
    return tuple(paths)


@pytest.fixture(scope="session")
def trained_bundle(her2net_cohorts, tmp_path_factory):
    """A HER2Net bundle from a short training with labels from the truth masks."""
    train_csv, _ = her2net_cohorts
    root = tmp_path_factory.mktemp("her2net_bundle")
    config = tiny_config()
    config.tile_labels = str(truth_tile_labels(train_csv, config, root / "labels.csv"))
    messages = []
    with one_thread():
        bundle = run_inline(
            lambda ctx: train_her2net(train_csv, root / "bundle", config, root / "work", ctx),
            lambda p: messages.append(p.message),
        )
    return bundle, root / "work", messages


def test_folds_are_stratified_and_slide_disjoint():
    positive = np.array([1] * 7 + [0] * 13, bool)
    patients = np.array([f"p{i}" if i < 7 else f"q{(i - 7) // 2}" for i in range(20)])
    folds = slide_folds(positive, patients, 5, seed=1)
    assert len(folds) == 5
    seen = np.concatenate([val for _, val in folds])
    assert sorted(seen.tolist()) == list(range(20))  # each slide validated once
    for train, val in folds:
        assert not set(train) & set(val)
        assert not set(patients[train]) & set(patients[val])  # patients never span both
        assert positive[val].sum() >= 1 and (~positive[val]).sum() >= 1
    with pytest.raises(ModelError, match="needs 5 patients of class HER2-positive, got 4"):
        slide_folds(positive[3:], patients[3:], 5)


def test_augmentation_keeps_pixels_and_labels_paired():
    generator = torch.Generator().manual_seed(0)
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8) + 1
    y = (x[:, 0] > x[:, 0].mean()).long()
    for _ in range(20):
        xa, ya = augment(x, y, generator)
        assert xa.shape == x.shape and ya.shape == y.shape
        masked = xa[:, :1] == 0
        assert masked.float().mean() <= 0.05 * 3  # 1-5% masked, with sampling noise
        same = ~masked[:, 0]
        assert torch.equal(ya[same], (xa[:, 0] > x[:, 0].mean()).long()[same])
    labels = torch.tensor([0, 1])
    assert torch.equal(augment(x, labels, generator)[1], labels)


def test_masking_hits_one_to_five_percent():
    generator = torch.Generator().manual_seed(3)
    x = torch.ones(400, 3, 32, 32)
    masked = (augment(x, None, generator)[0][:, 0] == 0).float().mean((1, 2))
    hit = masked[masked > 0]
    assert 100 < len(hit) < 300  # about half the tiles
    assert hit.min() > 0.002 and hit.max() < 0.08


@pytest.mark.parametrize("arch", SEGMENTERS)
def test_segmenters_give_pixel_logits(arch):
    model = build_segmenter({"arch": arch, "width": 4, "depth": 2, "backbone": "resnet18"})
    assert model(torch.zeros(1, 3, 32, 32)).shape == (1, 2, 32, 32)


@pytest.mark.parametrize("arch", CLASSIFIERS)
def test_classifiers_give_two_logits(arch):
    assert build_tile_classifier({"arch": arch, "width": 4})(torch.zeros(2, 3, 32, 32)).shape == (
        2,
        2,
    )


def test_unknown_architectures_are_errors():
    with pytest.raises(ModelError, match="tumor detector"):
        build_segmenter({"arch": "fcn"})
    with pytest.raises(ModelError, match="tile classifier"):
        build_tile_classifier({"arch": "vgg16"})


def test_bundle_round_trip(tmp_path):
    seg = build_segmenter({"arch": "segnet", "width": 4, "depth": 2})
    cls = [build_tile_classifier({"arch": "resnet18", "width": 4, "seed": i}) for i in range(5)]
    rng = np.random.default_rng(0)
    x = rng.random((60, 5))
    integrated = fit_integrated(x, (x[:, 0] > 0.5).astype(int), "gbdt", grid={"n_estimators": [5]})
    meta = {
        "magnification": 20.0,
        "tile_size": 256,
        "input_size": 16,
        "segmenter": {"arch": "segnet", "width": 4, "depth": 2},
        "classifier": {"arch": "resnet18", "width": 4},
    }
    path = save_her2net(tmp_path / "b", meta, seg, cls, integrated)
    model = load_her2net(path, "cpu")
    tiles = rng.integers(0, 255, (3, 16, 16, 3), dtype=np.uint8)
    expected = torch.stack(
        [torch.softmax(m(model._inputs(tiles)), 1)[:, 1] for m in cls], 1
    ).detach()
    np.testing.assert_allclose(model.tile_outputs(tiles), expected.numpy(), atol=1e-6)
    np.testing.assert_allclose(
        model.strong_probability(tiles), integrated.predict_proba(expected.numpy()), atol=1e-6
    )
    assert model.tumor_probability(tiles).shape == (3, 16, 16)
    with pytest.raises(ModelError, match="five|5 tile"):
        save_her2net(tmp_path / "c", meta, seg, cls[:4], integrated)
    broken = json.loads((path / "bundle.json").read_text())
    broken["classifier"] = {"arch": "resnet34", "width": 4}
    (path / "bundle.json").write_text(json.dumps(broken))
    with pytest.raises(ModelError, match="does not fit"):
        load_her2net(path, "cpu")


def test_ihc_labels_agree_with_truth(ihc_cohort):
    """Strong/weak from the registered, rule-scored IHC matches the synthetic truth."""
    cases = read_training_cohort(ihc_cohort)
    case = next(c for c in cases if c.positive)
    config = {
        "magnification": 20.0,
        "tile_size": 256,
        "input_size": 16,
        "background_saturation": 10.0,
        "tumor_min_fraction": 0.1,
        "strong_fraction": 0.5,
    }
    tiles = case_tiles(case, 0, config, high_mask=ihc_high_mask)
    high = read_mask(case.he_path.parent / "high_expression_mask.png")
    from her2viewer.slide import open_slide
    from her2viewer.tissue.tiles import tile_layout

    with open_slide(case.he_path) as slide:
        layout = tile_layout(slide, 20.0, 256, 16)
    index = {tuple(c): i for i, c in enumerate(layout.coords.tolist())}
    truth = np.array(
        [
            strong_label(t, crop_mask(high, 16, layout, index[tuple(c)]))
            for t, c in zip(tiles.tumor, tiles.coords.tolist(), strict=True)
        ]
    )
    labelled = truth >= 0
    assert labelled.sum() >= 10 and (truth == 1).sum() >= 2
    assert (tiles.strong[labelled] == truth[labelled]).mean() >= 0.8


def test_short_training_beats_chance_on_held_out_tiles(trained_bundle, her2net_cohorts):
    bundle, work, messages = trained_bundle
    assert any(m.startswith("[stage 2/8] tumor detector") for m in messages)
    assert any(m.startswith("[stage 7/8] tile classifier 5/5") for m in messages)
    meta = json.loads((bundle / "bundle.json").read_text())
    assert meta["training"]["label_source"] == "manual-label CSV"
    assert len(meta["training"]["folds"]) == 5
    _, heldout_csv = her2net_cohorts
    config = tiny_config()
    labels = truth_tile_labels(heldout_csv, config, work / "heldout_labels.csv")
    from her2viewer.models.her2net.data import read_tile_labels

    manual = read_tile_labels(labels)
    parts = [
        case_tiles(case, i, config.__dict__, manual)
        for i, case in enumerate(read_training_cohort(heldout_csv))
    ]
    tiles = TileSet.concat(parts)
    keep = tiles.strong >= 0
    model = load_her2net(bundle, "cpu")
    prob = model.strong_probability(tiles.images[keep])
    assert len(np.unique(tiles.strong[keep])) == 2
    assert roc_auc_score(tiles.strong[keep], prob) > 0.7
    tumor = model.tumor_probability(tiles.images) > 0.5
    from her2viewer.models.her2net.training import mean_iou

    assert mean_iou(tumor, tiles.tumor) > 0.6


def test_training_resumes_from_finished_stages(trained_bundle, her2net_cohorts, tmp_path):
    bundle, work, _ = trained_bundle
    train_csv, _ = her2net_cohorts
    config = tiny_config(tile_labels=str(work.parent / "labels.csv"))
    messages = []
    again = run_inline(
        lambda ctx: train_her2net(train_csv, tmp_path / "again", config, work, ctx),
        lambda p: messages.append(p.message),
    )
    assert not any("tumor detector loss" in m for m in messages)  # nothing retrained
    a, b = load_her2net(bundle, "cpu"), load_her2net(again, "cpu")
    tiles = np.random.default_rng(0).integers(0, 255, (2, 16, 16, 3), dtype=np.uint8)
    np.testing.assert_allclose(a.strong_probability(tiles), b.strong_probability(tiles))


def test_cohort_errors_are_one_line(tmp_path, synthetic_cohort):
    with pytest.raises(ModelError, match="not found"):
        read_training_cohort(tmp_path / "missing.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("case_id,he_path\nx,y.svs\n")
    with pytest.raises(ModelError, match="'her2_status' is missing"):
        read_training_cohort(bad)
    status = tmp_path / "status.csv"
    status.write_text("case_id,he_path,her2_status,patient_id\nx,y.svs,maybe,p\n")
    with pytest.raises(ModelError, match="positive or negative"):
        read_training_cohort(status)
    nomask = tmp_path / "nomask.csv"
    nomask.write_text("case_id,he_path,her2_status,patient_id\nx,y.svs,positive,p\n")
    with pytest.raises(ModelError, match="no tumor annotation"):
        read_training_cohort(nomask)
    labels = tmp_path / "labels.csv"
    labels.write_text("case_id,x,y,label\na,0,0,maybe\n")
    from her2viewer.models.her2net.data import read_tile_labels

    with pytest.raises(ModelError, match="strong or weak"):
        read_tile_labels(labels)
    assert Path(synthetic_cohort).is_file()
