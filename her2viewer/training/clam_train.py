"""CLAM training with seed 000's recipe, early stopping, and k-fold cross-validation.

Defaults follow the paper (and CLAM's ``main.py``): Adam lr 1e-4, weight decay
1e-5, dropout 0.25, small model (hidden 256), smooth top-1 SVM bag loss, bag
weight 0.7, k_sample 8, at most 200 epochs, early stopping once validation loss
has not improved for 20 epochs (not before epoch 50, CLAM's ``stop_epoch``); the
kept model is the one with the lowest validation loss. One bag per step.
``standardize`` (off by default, not in the recipe) z-scores features with the
training patches' per-dimension mean and standard deviation, stored in the model.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from her2viewer import __version__
from her2viewer.errors import ModelError
from her2viewer.jobs import CancelToken
from her2viewer.models.clam import CLAM, make_loss, save_clam_bundle
from her2viewer.outputs import write_text_atomic
from her2viewer.stats.metrics import auc_delong, binary_metrics
from her2viewer.stats.splits import patient_folds
from her2viewer.training.clam_config import ClamTrainConfig
from her2viewer.training.datasets import Bag, Cohort

EpochFn = Callable[[dict], None]
__all__ = ["ClamTrainConfig", "TrainResult", "cross_validate", "evaluate_bags", "train_clam"]


@dataclass
class TrainResult:
    """A trained model, its best epoch and the per-epoch history."""

    model: CLAM
    best_epoch: int
    history: list[dict] = field(default_factory=list)


def _tensor(bag: Bag) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.from_numpy(bag.features), torch.tensor([bag.label])


@torch.no_grad()
def evaluate_bags(model: CLAM, bags: list[Bag], loss_fn) -> dict:
    """Mean bag loss, accuracy, probabilities and (binary) AUC over bags."""
    model.eval()
    losses, probs = [], []
    for bag in bags:
        h, y = _tensor(bag)
        logits, prob, *_ = model(h)
        losses.append(float(loss_fn(logits, y)))
        probs.append(prob[0].numpy())
    probs = np.array(probs)
    labels = np.array([b.label for b in bags])
    auc = auc_delong(labels == 1, probs[:, 1]).value if probs.shape[1] == 2 else float("nan")
    return {
        "loss": float(np.mean(losses)),
        "accuracy": float((probs.argmax(1) == labels).mean()),
        "auc": auc,
        "probabilities": probs,
    }


def train_clam(
    train: list[Bag],
    val: list[Bag],
    config: ClamTrainConfig,
    n_classes: int,
    on_epoch: EpochFn | None = None,
    cancel: CancelToken | None = None,
) -> TrainResult:
    """Train one CLAM model; keep the weights of the lowest validation loss.

    Raises
    ------
    ModelError
        Empty training or validation set.
    """
    if not train or not val:
        raise ModelError("Training needs at least one training and one validation slide.")
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    model = CLAM(config.clam_config(n_classes, train[0].features.shape[1]), config.inst_loss)
    if config.standardize:
        patches = np.concatenate([b.features for b in train])
        model.feature_mean.copy_(torch.from_numpy(patches.mean(0)))
        model.feature_std.copy_(torch.from_numpy(patches.std(0) + 1e-6))
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    loss_fn = make_loss(config.bag_loss, n_classes)
    best = (float("inf"), 0, copy.deepcopy(model.state_dict()))
    history = []
    for epoch in range(config.max_epochs):
        train_loss = _train_epoch(
            model,
            [train[i] for i in rng.permutation(len(train))],
            optimizer,
            loss_fn,
            config.bag_weight,
        )
        val_stats = evaluate_bags(model, val, loss_fn)
        record = {
            "epoch": epoch,
            "train_loss": train_loss,
            "val_loss": val_stats["loss"],
            "val_auc": val_stats["auc"],
            "val_accuracy": val_stats["accuracy"],
        }
        history.append(record)
        if val_stats["loss"] < best[0]:
            best = (val_stats["loss"], epoch, copy.deepcopy(model.state_dict()))
        if on_epoch is not None:
            on_epoch(record)
        if cancel is not None:
            cancel.check()
        if epoch - best[1] >= config.patience and epoch + 1 >= config.min_epochs:
            break
    model.load_state_dict(best[2])
    return TrainResult(model.eval(), best[1], history)


def _train_epoch(model: CLAM, bags: list[Bag], optimizer, loss_fn, bag_weight: float) -> float:
    model.train()
    total = 0.0
    for bag in bags:
        h, y = _tensor(bag)
        logits, _, _, _, extra = model(h, label=y, instance_eval=True)
        loss = bag_weight * loss_fn(logits, y) + (1 - bag_weight) * extra["instance_loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        total += loss.item()
    return total / len(bags)


def cross_validate(
    cohort: Cohort,
    out_dir: str | Path,
    config: ClamTrainConfig | None = None,
    n_folds: int = 5,
    on_epoch: EpochFn | None = None,
    cancel: CancelToken | None = None,
    provenance: dict | None = None,
) -> dict:
    """Train one model per patient-level fold; write ``fold_<k>/`` bundles and ``summary.json``.

    Returns
    -------
    dict
        The summary: per-fold best epoch, validation and test metrics, and the
        pooled out-of-fold test predictions with their metrics.
    """
    config = config or ClamTrainConfig()
    out = Path(out_dir)
    folds = patient_folds(cohort.labels, cohort.patients, n_folds, config.seed)
    fold_rows, test_rows = [], []
    for fold in folds:
        start = time.perf_counter()

        def pick(idx):
            return [cohort.bags[i] for i in idx]

        result = train_clam(
            pick(fold.train),
            pick(fold.val),
            config,
            len(cohort.class_names),
            _tagged(on_epoch, fold.index),
            cancel,
        )
        loss_fn = make_loss(config.bag_loss, len(cohort.class_names))
        val = evaluate_bags(result.model, pick(fold.val), loss_fn)
        test = evaluate_bags(result.model, pick(fold.test), loss_fn)
        meta = _bundle_meta(cohort, config, fold, result, provenance)
        save_clam_bundle(out / f"fold_{fold.index}", result.model, meta)
        fold_rows.append(
            {
                "fold": fold.index,
                "best_epoch": result.best_epoch,
                "epochs": len(result.history),
                "seconds": time.perf_counter() - start,
                **{f"val_{k}": val[k] for k in ("loss", "auc", "accuracy")},
                **{f"test_{k}": test[k] for k in ("loss", "auc", "accuracy")},
            }
        )
        for i, prob in zip(fold.test, test["probabilities"], strict=True):
            bag = cohort.bags[i]
            test_rows.append(
                {
                    "slide_id": bag.slide_id,
                    "fold": fold.index,
                    "label": bag.label,
                    "probabilities": prob.tolist(),
                }
            )
    summary = {
        "class_names": cohort.class_names,
        "config": asdict(config),
        "folds": fold_rows,
        "test_predictions": test_rows,
        "pooled_test": _pooled(test_rows),
    }
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "summary.json", json.dumps(summary, indent=2))
    return summary


def _tagged(on_epoch: EpochFn | None, fold: int) -> EpochFn | None:
    if on_epoch is None:
        return None
    return lambda record: on_epoch({"fold": fold, **record})


def _pooled(rows: list[dict]) -> dict:
    labels = np.array([r["label"] for r in rows])
    probs = np.array([r["probabilities"] for r in rows])
    pred = probs.argmax(1)
    out = {"n": len(rows), "accuracy": float((pred == labels).mean())}
    if probs.shape[1] == 2:
        out["auc"] = auc_delong(labels == 1, probs[:, 1]).to_dict()
        metrics = binary_metrics(labels == 1, pred == 1)
        out["binary_metrics"] = {k: v.to_dict() for k, v in metrics.items()}
    return out


def _bundle_meta(
    cohort: Cohort, config: ClamTrainConfig, fold, result: TrainResult, provenance: dict | None
) -> dict:
    attrs = cohort.patch_attrs
    magnification = float(attrs.get("magnification", np.nan))
    return {
        "class_names": cohort.class_names,
        # Features from CLAM's own scripts record no encoder: the bundle then names none.
        **({"encoder": cohort.encoder} if cohort.encoder else {}),
        "patch_size": int(attrs.get("target_patch_size", attrs.get("patch_size", 0))) or None,
        "magnification": magnification if np.isfinite(magnification) else None,
        "thresholds": {"positive_probability": 0.5},
        "provenance": {
            "trained_by": f"her2viewer {__version__}",
            "recipe": "seed 000 (CLAM)",
            "train_config": asdict(config),
            "fold": fold.index,
            "best_epoch": result.best_epoch,
            "train_slides": [cohort.bags[i].slide_id for i in fold.train],
            "val_slides": [cohort.bags[i].slide_id for i in fold.val],
            "test_slides": [cohort.bags[i].slide_id for i in fold.test],
            **(provenance or {}),
        },
    }
