"""CLAM training: cohorts over features files, patient-level folds, learning beats chance."""

from __future__ import annotations

import csv
import json

import h5py
import numpy as np
import pytest
import torch

from her2viewer.errors import ModelError
from her2viewer.models.clam import load_clam, predict
from her2viewer.stats.splits import patient_folds
from her2viewer.training.clam_train import ClamTrainConfig, cross_validate
from her2viewer.training.datasets import load_cohort

DIM = 16


@pytest.fixture(autouse=True)
def one_thread():
    """One bag per step is too small for intra-op threads; on a busy machine they only hurt."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def write_bag_cohort(root, n_patients=12, seed=0):
    """Synthetic CLAM-layout features: positive slides hold a few shifted 'tumour' patches."""
    rng = np.random.default_rng(seed)
    (root / "h5_files").mkdir(parents=True)
    rows = []
    for p in range(n_patients):
        status = "positive" if p % 2 else "negative"
        for s in range(1 + (p % 3 == 0)):  # some patients have two slides
            name = f"p{p:02d}_s{s}"
            feats = rng.normal(size=(40, DIM)).astype(np.float32)
            if status == "positive":
                feats[:8, :4] += 2.0
            with h5py.File(root / "h5_files" / f"{name}.h5", "w") as h5:
                h5["features"] = feats
                h5["coords"] = np.stack([np.arange(40) * 256, np.zeros(40)], 1).astype(np.int64)
            rows.append({"case_id": name, "her2_status": status, "patient_id": f"P{p}"})
    csv_path = root / "labels.csv"
    with open(csv_path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return csv_path


def test_patient_folds_are_stratified_and_disjoint():
    labels = np.array([0, 1] * 15)
    patients = np.arange(30) // 2  # two slides per patient
    folds = patient_folds(labels, patients, n_folds=5, seed=1)
    tested = np.concatenate([f.test for f in folds])
    assert sorted(tested) == list(range(30))
    for f in folds:
        parts = [set(patients[f.train]), set(patients[f.val]), set(patients[f.test])]
        assert not (parts[0] & parts[1]) and not (parts[0] & parts[2]) and not (parts[1] & parts[2])
        assert len(f.train) + len(f.val) + len(f.test) == 30
    with pytest.raises(ModelError, match="needs 5 patients of class 1, got 2"):
        patient_folds([0, 0, 0, 0, 0, 1, 1], list(range(7)), n_folds=5)
    with pytest.raises(ModelError, match="at least 3 folds"):
        patient_folds(labels, patients, n_folds=2)


def test_cross_validation_learns_and_writes_bundles(tmp_path):
    csv_path = write_bag_cohort(tmp_path / "feats")
    cohort = load_cohort(tmp_path / "feats", csv_path)
    assert cohort.class_names == ["negative", "positive"] and len(cohort.bags) == 16
    config = ClamTrainConfig(max_epochs=12, min_epochs=1, patience=4, lr=5e-4, k_sample=4)
    epochs = []
    summary = cross_validate(cohort, tmp_path / "out", config, n_folds=3, on_epoch=epochs.append)
    assert {e["fold"] for e in epochs} == {0, 1, 2}
    assert summary["pooled_test"]["n"] == 16
    assert summary["pooled_test"]["auc"]["value"] > 0.8  # chance is 0.5
    saved = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert saved["pooled_test"]["auc"]["value"] == summary["pooled_test"]["auc"]["value"]
    model, meta = load_clam(tmp_path / "out" / "fold_0")
    assert meta["class_names"] == ["negative", "positive"]
    assert meta["provenance"]["recipe"].startswith("seed 000")
    first = next(r for r in summary["test_predictions"] if r["fold"] == 0)
    bag = next(b for b in cohort.bags if b.slide_id == first["slide_id"])
    np.testing.assert_allclose(
        predict(model, bag.features).probabilities, first["probabilities"], atol=1e-6
    )


def test_cohort_errors(tmp_path):
    csv_path = write_bag_cohort(tmp_path / "feats", n_patients=4)
    with pytest.raises(ModelError, match="no column 'grade'"):
        load_cohort(tmp_path / "feats", csv_path, label_column="grade")
    with pytest.raises(ModelError, match="not one of"):
        load_cohort(tmp_path / "feats", csv_path, class_names=["negative", "equivocal"])
    with pytest.raises(ModelError, match="No features for slide"):
        load_cohort(tmp_path, csv_path)
    with pytest.raises(ModelError, match="Labels CSV not found"):
        load_cohort(tmp_path / "feats", tmp_path / "none.csv")


def test_train_verb(tmp_path, capsys):
    from her2viewer.cli import main

    csv_path = write_bag_cohort(tmp_path / "feats", n_patients=9)
    args = [
        "clam",
        "train",
        "--features-dir",
        str(tmp_path / "feats"),
        "--labels",
        str(csv_path),
        "-o",
        str(tmp_path / "out"),
        "--folds",
        "3",
        "--max-epochs",
        "3",
        "--min-epochs",
        "1",
        "--size",
        "small",
        "--no-gate",
        "--subtyping",
        "--bag-loss",
        "ce",
    ]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert "clam train fold_2 (3/3): 1/3 epochs - train loss" in captured.err
    assert "pooled test over 12 slides" in captured.out
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "fold_0",
        "fold_1",
        "fold_2",
        "summary.json",
    ]
    saved = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert saved["config"]["subtyping"] is True and saved["config"]["gated"] is False
    assert main([*args[:-2], "--bag-loss", "hinge"]) == 2
    assert "Unknown loss 'hinge'" in capsys.readouterr().err


def test_demo_split_holds_out_balanced_cases(tmp_path):
    from her2viewer.training.demo_clam import main as demo_main
    from her2viewer.training.demo_clam import split_cohort

    cohort = load_cohort(tmp_path / "feats", write_bag_cohort(tmp_path / "feats", n_patients=8))
    dev, test = split_cohort(cohort, 4)
    assert sorted(test.labels.tolist()) == [0, 0, 1, 1]
    assert not {b.slide_id for b in dev.bags} & {b.slide_id for b in test.bags}
    assert len(dev.bags) + len(test.bags) == len(cohort.bags)
    with pytest.raises(ModelError, match="Too few development cases"):
        demo_main([str(tmp_path / "b"), "--cases", "8", "--test-cases", "4", "--folds", "3"])
