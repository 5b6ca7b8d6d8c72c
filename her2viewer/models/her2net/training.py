"""Training HER2Net in resumable stages: tiles, tumor detector, five fold classifiers, forest.

Each stage writes its result into a work folder (``tiles.npz``, ``segmenter.safetensors``,
``classifier_K.safetensors``, ``integrated.json``/``.npz``); a rerun with the same work
folder skips the stages already done. Defaults follow the seed (U-Net, ResNet-50,
512 px tiles, Adam lr 1e-5, weight decay 1e-3, cross-entropy, stratified slide-level
5-fold CV, random forest); the demo shrinks the networks and the resolution.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from sklearn.metrics import roc_auc_score
from torch import nn

from her2viewer.devices import choose_device
from her2viewer.errors import ModelError
from her2viewer.jobs import JobContext
from her2viewer.models.her2net.choices import POSITIVE_PERCENT, TUMOR_MIN_FRACTION
from her2viewer.models.her2net.data import (
    STRONG_FRACTION,
    HighMask,
    TileSet,
    TrainCase,
    case_tiles,
    read_tile_labels,
    read_training_cohort,
)
from her2viewer.models.her2net.ensemble import (
    DEFAULT_KIND,
    N_INPUTS,
    IntegratedClassifier,
    fit_integrated,
)
from her2viewer.models.her2net.model import save_her2net
from her2viewer.models.her2net.networks import build_segmenter, build_tile_classifier
from her2viewer.models.patch_cnn import to_tensor
from her2viewer.outputs import write_text_atomic
from her2viewer.stats.splits import patient_folds
from her2viewer.tissue.masks import mask_iou
from her2viewer.tissue.tiles import BACKGROUND_SATURATION, TILE_SIZE

N_FOLDS = N_INPUTS


@dataclass
class Her2NetTrainConfig:
    """Everything that defines a HER2Net training run (stored in ``bundle.json``)."""

    magnification: float = 4.0
    tile_size: int = TILE_SIZE
    input_size: int = TILE_SIZE
    segmenter: dict = field(default_factory=lambda: {"arch": "unet", "width": 64, "depth": 4})
    classifier: dict = field(default_factory=lambda: {"arch": "resnet50"})
    integrated: str = DEFAULT_KIND
    integrated_grid: dict | None = None
    segmenter_epochs: int = 20
    classifier_epochs: int = 20
    patience: int = 3
    balanced_loss: bool = True
    batch_size: int = 32
    lr: float = 1e-5
    weight_decay: float = 1e-3
    background_saturation: float = BACKGROUND_SATURATION
    tumor_min_fraction: float = TUMOR_MIN_FRACTION
    strong_fraction: float = STRONG_FRACTION
    tile_labels: str | None = None
    seed: int = 0
    device: str = "auto"


# --------------------------------------------------------------------------- folds
def slide_folds(positive, patients, n_folds: int = N_FOLDS, seed: int = 0) -> list[tuple]:
    """Stratified slide-level k-fold: ``[(train_slides, val_slides), ...]``.

    The folds of :func:`~her2viewer.stats.splits.patient_folds` (slides of one patient
    stay together, the share of HER2-positive slides is kept even); HER2Net validates on
    each fold's held-out group and trains on the rest, so every slide is validated once.

    Raises
    ------
    ModelError
        When a status has fewer patients than folds.
    """
    status = np.where(np.asarray(positive, bool), "HER2-positive", "HER2-negative")
    return [
        (np.sort(np.concatenate([f.train, f.val])), f.test)
        for f in patient_folds(status, patients, n_folds, seed)
    ]


# --------------------------------------------------------------------------- augmentation
def augment(
    x: torch.Tensor, y: torch.Tensor | None, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Seed augmentation of a batch: one of identity, 90/180/270 rotation, horizontal or
    vertical mirror (applied to ``y`` too when it is a pixel target ``(N, H, W)``), and
    masking of 1-5% of the pixels (set to 0, the mean after normalisation) in half of
    the tiles."""
    choice = int(torch.randint(0, 6, (1,), generator=generator))
    pixels = y is not None and y.ndim >= 3
    if choice in (1, 2, 3):
        x = torch.rot90(x, choice, (-2, -1))
        y = torch.rot90(y, choice, (-2, -1)) if pixels else y
    elif choice in (4, 5):
        dim = -1 if choice == 4 else -2
        x, y = x.flip(dim), y.flip(dim) if pixels else y
    n, _, h, w = x.shape
    fraction = 0.01 + 0.04 * torch.rand(n, 1, 1, 1, generator=generator)
    masked = torch.rand(n, 1, h, w, generator=generator) < fraction
    masked &= torch.rand(n, 1, 1, 1, generator=generator) < 0.5
    return x.masked_fill(masked, 0.0), y


# --------------------------------------------------------------------------- loops
def _optimiser(model: nn.Module, config: Her2NetTrainConfig) -> torch.optim.Optimizer:
    return torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)


def _epoch(model, x, y, config, optimiser, generator, device, weight=None) -> float:
    model.train()
    order, total = torch.randperm(len(x), generator=generator), 0.0
    for batch in order.split(config.batch_size):
        xb, yb = augment(x[batch], y[batch], generator)
        optimiser.zero_grad()
        loss = nn.functional.cross_entropy(model(xb.to(device)), yb.to(device), weight=weight)
        loss.backward()
        optimiser.step()
        total += loss.item() * len(batch)
    model.eval()
    return total / max(1, len(x))


@torch.no_grad()
def _predict(model: nn.Module, x: torch.Tensor, batch: int, device) -> torch.Tensor:
    model.eval()
    return torch.cat([torch.softmax(model(b.to(device)), 1).cpu() for b in x.split(batch)])


def train_segmenter(
    tiles: TileSet, config: Her2NetTrainConfig, report=None
) -> tuple[nn.Module, dict]:
    """Train the tumor detector on all tissue tiles; returns the model and its training mIoU."""
    device = choose_device(config.device)
    model = build_segmenter(config.segmenter | {"seed": config.seed}).to(device)
    x = to_tensor(tiles.images)
    y = torch.from_numpy(tiles.tumor.astype(np.int64))
    generator = torch.Generator().manual_seed(config.seed)
    optimiser, losses = _optimiser(model, config), []
    for epoch in range(config.segmenter_epochs):
        losses.append(_epoch(model, x, y, config, optimiser, generator, device))
        if report:
            report(epoch + 1, config.segmenter_epochs, f"tumor detector loss {losses[-1]:.4f}")
    pred = _predict(model, x, config.batch_size, device)[:, 1].numpy() > 0.5
    return model.cpu(), {"losses": losses, "train_miou": mean_iou(pred, tiles.tumor)}


def mean_iou(pred: np.ndarray, truth: np.ndarray) -> float:
    """Mean of tumor IoU and background IoU over all pixels (the seed's mIoU)."""
    pred, truth = np.asarray(pred, bool), np.asarray(truth, bool)
    return float((mask_iou(pred, truth) + mask_iou(~pred, ~truth)) / 2)


def train_tile_classifier(
    train: TileSet, val: TileSet, config: Her2NetTrainConfig, fold: int, report=None
) -> tuple[nn.Module, dict]:
    """Train one sub-classifier; keep the epoch with the best validation AUROC (early stop)."""
    device = choose_device(config.device)
    model = build_tile_classifier(config.classifier | {"seed": config.seed + fold}).to(device)
    x, y = to_tensor(train.images), torch.from_numpy(train.strong.astype(np.int64))
    xv, yv = to_tensor(val.images), val.strong.astype(int)
    generator = torch.Generator().manual_seed(config.seed + fold)
    optimiser = _optimiser(model, config)
    weight = _class_weights(train.strong, config.balanced_loss, device)
    best, best_state, stale, history = -float("inf"), None, 0, []
    for epoch in range(config.classifier_epochs):
        loss = _epoch(model, x, y, config, optimiser, generator, device, weight)
        score = _val_auc(model, xv, yv, config, device)
        score = score if np.isfinite(score) else -loss
        history.append({"loss": loss, "val_auc": score})
        if report:
            report(
                epoch + 1, config.classifier_epochs, f"fold {fold} loss {loss:.4f} AUC {score:.3f}"
            )
        if score > best:
            best, stale = score, 0
            best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        else:
            stale += 1
            if stale >= config.patience:
                break
    model.load_state_dict(best_state)
    return model.cpu().eval(), {"history": history, "best_val_auc": best}


def _class_weights(labels: np.ndarray, balanced: bool, device) -> torch.Tensor | None:
    """Inverse-frequency class weights (strong tiles are the minority), or None."""
    if not balanced:
        return None
    counts = np.bincount(np.asarray(labels, int), minlength=2).astype(np.float32)
    weights = counts.sum() / (2 * np.maximum(counts, 1))
    return torch.from_numpy(weights).to(device)


def _val_auc(model, x, y, config, device) -> float:
    if len(np.unique(y)) < 2:
        return float("nan")
    return float(roc_auc_score(y, _predict(model, x, config.batch_size, device)[:, 1].numpy()))


def five_outputs(
    models: list[nn.Module], images: np.ndarray, config: Her2NetTrainConfig
) -> np.ndarray:
    """``(N, 5)`` probabilities of *strong* from the five sub-classifiers."""
    device = choose_device(config.device)
    x = to_tensor(images)
    cols = [_predict(m.to(device), x, config.batch_size, device)[:, 1].numpy() for m in models]
    return np.stack(cols, 1)


# --------------------------------------------------------------------------- pipeline
def _subset(tiles: TileSet, keep: np.ndarray) -> TileSet:
    return TileSet(**{k: getattr(tiles, k)[keep] for k in TileSet.__dataclass_fields__})


def _stage_tiles(
    cases: list[TrainCase], config: Her2NetTrainConfig, work: Path, report, high_mask
) -> TileSet:
    path = work / "tiles.npz"
    if path.is_file():
        return TileSet.load(path)
    manual = read_tile_labels(config.tile_labels) if config.tile_labels else None
    parts = []
    for i, case in enumerate(cases):
        parts.append(case_tiles(case, i, asdict(config), manual, high_mask))
        report(i + 1, len(cases), f"tiles of {case.case_id}")
    tiles = TileSet.concat(parts)
    if len(tiles.images) == 0:
        raise ModelError("The cohort has no tissue tiles; check the slides and the magnification.")
    tiles.save(path)
    return tiles


def _stage_model(path: Path, build, train):
    """Load ``path`` when the stage is done, else train and save it."""
    if path.is_file():
        model = build()
        model.load_state_dict(load_file(str(path)))
        info_path = path.with_suffix(".json")
        return model.eval(), json.loads(info_path.read_text()) if info_path.is_file() else {}
    model, info = train()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path) + ".tmp")
    Path(str(path) + ".tmp").replace(path)
    write_text_atomic(path.with_suffix(".json"), json.dumps(info))
    return model, info


def _stage_integrated(classifiers, tiles: TileSet, config: Her2NetTrainConfig, work: Path):
    path = work / "integrated.npz"
    info_path = work / "integrated.json"
    if path.is_file() and info_path.is_file():
        meta = json.loads(info_path.read_text())
        with np.load(path) as data:
            arrays = {k: data[k] for k in data.files}
        return IntegratedClassifier(
            meta["kind"], meta["spec"], arrays, meta["params"], meta["cv_auc"]
        )
    labelled = tiles.strong >= 0
    outputs = five_outputs(classifiers, tiles.images[labelled], config)
    integrated = fit_integrated(
        outputs, tiles.strong[labelled], config.integrated, config.seed, config.integrated_grid
    )
    np.savez(path, **integrated.arrays)
    write_text_atomic(info_path, json.dumps(integrated.meta()))
    return integrated


def train_her2net(
    labels_csv: str | Path,
    out: str | Path,
    config: Her2NetTrainConfig | None = None,
    work_dir: str | Path | None = None,
    context: JobContext | None = None,
    provenance: dict | None = None,
    high_mask: HighMask | None = None,
) -> Path:
    """Train HER2Net on a cohort and write a bundle; resumable per stage.

    Parameters
    ----------
    labels_csv : path
        Cohort (see :mod:`her2viewer.models.her2net.data`).
    out : path
        Bundle folder to write.
    config : Her2NetTrainConfig, optional
        Seed defaults when omitted.
    work_dir : path, optional
        Stage results; ``OUT.work`` by default. Rerunning resumes from it.
    context : JobContext, optional
        Progress per stage (message ``[stage k/8] ...``) and cancellation.
    provenance : dict, optional
        Extra ``bundle.json`` entries (e.g. data notice, held-out figures).
    high_mask : callable, optional
        The IHC high-expression mask behind the tile labels
        (:func:`her2viewer.analysis.her2net.ihc_high_mask`); needed without ``tile_labels``.

    Returns
    -------
    Path
        The bundle.
    """
    config = config or Her2NetTrainConfig()
    out = Path(out)
    cases = read_training_cohort(labels_csv)
    positive, patients = [c.positive for c in cases], [c.patient_id for c in cases]
    folds = slide_folds(positive, patients, seed=config.seed)
    work = Path(work_dir) if work_dir else out.with_name(out.name + ".work")
    work.mkdir(parents=True, exist_ok=True)
    write_text_atomic(work / "config.json", json.dumps(asdict(config), indent=2))
    stages = 3 + N_FOLDS

    def reporter(stage: int, name: str):
        def report(done: int, total: int, message: str = "") -> None:
            if context is not None:
                context.report(done, total, f"[stage {stage}/{stages}] {name}: {message}")

        return report

    tiles = _stage_tiles(cases, config, work, reporter(1, "tiles"), high_mask)
    segmenter, seg_info = _stage_model(
        work / "segmenter.safetensors",
        lambda: build_segmenter(config.segmenter),
        lambda: train_segmenter(tiles, config, reporter(2, "tumor detector")),
    )
    labelled = _subset(tiles, tiles.strong >= 0)
    classifiers, fold_info = [], []
    for k, (train_cases, val_cases) in enumerate(folds):
        train = _subset(labelled, np.isin(labelled.case, train_cases))
        val = _subset(labelled, np.isin(labelled.case, val_cases))
        model, info = _stage_model(
            work / f"classifier_{k}.safetensors",
            lambda: build_tile_classifier(config.classifier),
            lambda train=train, val=val, k=k: train_tile_classifier(
                train, val, config, k, reporter(3 + k, f"tile classifier {k + 1}/{N_FOLDS}")
            ),
        )
        classifiers.append(model)
        fold_info.append(info | {"val_cases": [cases[i].case_id for i in val_cases]})
    reporter(stages, "integrated classifier")(0, 1, "grid search")
    integrated = _stage_integrated(classifiers, labelled, config, work)
    reporter(stages, "integrated classifier")(
        1, 1, f"{integrated.kind} CV AUC {integrated.cv_auc:.3f}"
    )
    meta = {
        "name": out.name,
        "magnification": config.magnification,
        "tile_size": config.tile_size,
        "input_size": config.input_size,
        "segmenter": config.segmenter,
        "classifier": config.classifier,
        "thresholds": {
            "positive_percent": POSITIVE_PERCENT,
            "tumor_min_fraction": config.tumor_min_fraction,
            "background_saturation": config.background_saturation,
            "strong_fraction": config.strong_fraction,
        },
        "classes": ["weak", "strong"],
        "training": asdict(config)
        | {
            "n_cases": len(cases),
            "n_tiles": int(len(tiles.images)),
            "n_labelled_tiles": int(len(labelled.images)),
            "n_strong_tiles": int((labelled.strong == 1).sum()),
            "tumor_detector": seg_info,
            "folds": fold_info,
            "label_source": "manual-label CSV" if config.tile_labels else "registered IHC",
        },
        **(provenance or {}),
    }
    return save_her2net(out, meta, segmenter, classifiers, integrated)
