"""Training of the HER2 IHC grading CNNs: :func:`train_cohort`, behind ``grade train``.

The method is that of "Deep Learning Based Automated HER2 Score Prediction Using
Immunohistochemistry Histopathological Images: A Dual-Center Study" (preprint), the
training pipeline of ``grade train`` and of the demo bundle's script: tumor-enriched
patches of a cohort's IHC slides (:func:`~her2viewer.models.patch_data.slide_patches`), a
patient-level train/validation/test split, then either a trained grade head on a backbone
with fixed seeded random weights (``linear-head``: features of the frozen network, a
logistic regression chosen on the validation patients, folded into the network's last
layer) or the whole network trained (``full``, for a GPU). Held-out metrics go into the
bundle.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from her2viewer.devices import choose_device
from her2viewer.errors import ModelError, StainError
from her2viewer.jobs import JobContext
from her2viewer.models.patch_cnn import (
    augment,
    build_patch_cnn,
    fit_linear_head,
    head_inputs,
    head_layer,
    input_transform,
    predict_proba,
    save_patch_cnn,
    seeded_backbone,
    slide_grade,
    train_patch_cnn,
)
from her2viewer.models.patch_data import SCORE_NAMES, grading_metrics, read_cohort, slide_patches
from her2viewer.stain import MacenkoNormalizer
from her2viewer.stats.splits import patient_split
from her2viewer.tissue.patching import MAX_BACKGROUND

RECIPES = ("linear-head", "full")
#: Inverse L2 strengths tried for the grade head; the validation patients choose.
HEAD_C_GRID = (0.01, 0.1, 1.0)
AGGREGATION = "mean patch probability, argmax"


def _gather(cases, score_index, limit, seed, tumor, step, on_case):
    xs, ys, groups = [], [], []
    for case in cases:
        patches = slide_patches(case.path, limit=limit, seed=seed, tumor=tumor, step=step).patches
        on_case(case)
        xs.append(patches)
        ys += [score_index[case.score]] * len(patches)
        groups += [case.case_id] * len(patches)
    return np.concatenate(xs), np.array(ys), np.array(groups)


def _fit_normalizer(patches: np.ndarray) -> dict | None:
    """Reference stains from four training patches; DAB amounts are kept (keep_dab)."""
    mosaic = np.concatenate(list(patches[:4]), axis=1)
    try:
        return MacenkoNormalizer.fit(mosaic).to_dict() | {"keep_dab": True}
    except StainError:
        return None


def _metrics(probs, y, groups, classes) -> dict:
    slides = sorted(set(groups))
    slide_probs = np.stack([slide_grade(probs[groups == g])[1] for g in slides])
    slide_truth = [int(y[groups == g][0]) for g in slides]
    return {
        "patch": asdict(grading_metrics(y, probs, classes)),
        "slide": asdict(grading_metrics(slide_truth, slide_probs, classes)),
        "slides": slides,
    }


@torch.no_grad()
def _head_probs(model, arch, features) -> np.ndarray:
    logits = head_layer(model, arch)(torch.as_tensor(features, dtype=torch.float32))
    return torch.softmax(logits, 1).numpy()


def _train_linear_head(
    model, arch, data, transform, seed, device, log, report
) -> tuple[dict, dict]:
    """Grade head on frozen features (+ one augmented training view), C chosen on validation."""
    x_train, y_train, _ = data["train"]

    def features_of(x, name):
        def progress(done, total):
            report(done, total, f"features of the {name} patches")

        return head_inputs(model, arch, x, device=device, progress=progress)

    features = {n: features_of(transform(x), n) for n, (x, _, _) in data.items()}
    view = augment(transform(x_train), torch.Generator().manual_seed(seed))
    train_x = np.concatenate([features["train"], features_of(view, "augmented training")])
    train_y = np.concatenate([y_train, y_train])
    scores = {}
    for c in HEAD_C_GRID:
        fit_linear_head(model, arch, train_x, train_y, c)
        _, y_val, _ = data["validation"]
        probs = _head_probs(model, arch, features["validation"])
        scores[c] = grading_metrics(y_val, probs, list(range(probs.shape[1]))).macro_auc
        log(f"head C={c}: validation patch macro-AUC {scores[c]:.3f}")
    best = max(HEAD_C_GRID, key=lambda c: np.nan_to_num(scores[c], nan=-1.0))
    fit_linear_head(model, arch, train_x, train_y, best)
    head = {
        "kind": "logistic regression on frozen features",
        "C": best,
        "validation_macro_auc_per_C": {str(c): v for c, v in scores.items()},
        "augmentation": "one flipped/rotated/jittered view of every training patch",
    }
    probs = {n: _head_probs(model, arch, features[n]) for n in ("validation", "test")}
    return head, probs


def train_cohort(
    labels: str | Path,
    out: str | Path,
    arch: str = "resnet34",
    scores: tuple[int, ...] = (1, 2, 3),
    recipe: str = "linear-head",
    input_size: int = 128,
    seed: int = 0,
    limit: int | None = None,
    step: int | None = None,
    tumor: str = "auto",
    macenko: bool = True,
    epochs: int = 5,
    batch_size: int = 16,
    lr: float = 1e-3,
    device: str = "auto",
    log=lambda message: None,
    extra: dict | None = None,
    context: JobContext | None = None,
) -> dict:
    """Train a patch-grading CNN on a cohort and write its bundle with held-out metrics.

    Parameters
    ----------
    labels : path
        Cohort ``labels.csv``.
    out : path
        Bundle folder or ``.zip``.
    arch, scores, recipe, input_size, seed
        Backbone, IHC scores graded, ``linear-head`` or ``full``, CNN input side,
        seed (split, backbone weights, augmentation).
    limit, step, tumor
        Patches per slide, grid step (px at 20x; overlapping patches give small
        slides more of them) and the tumor rule of
        :func:`~her2viewer.models.patch_data.slide_patches`.
    macenko : bool
        Macenko-normalise patches (DAB amounts kept).
    epochs, batch_size, lr
        Full recipe only.
    device : str
    log : callable
        Receives progress lines.
    extra : dict, optional
        More metadata for ``bundle.json`` (notes, provenance).
    context : JobContext, optional
        Progress (slides read, feature batches or epochs) and cancellation.

    Returns
    -------
    dict
        The bundle's metadata (``metrics`` holds validation and test figures).
    """
    if recipe not in RECIPES:
        raise ModelError(f"Unknown recipe '{recipe}'; choose from {', '.join(RECIPES)}.")
    classes = [SCORE_NAMES[s] for s in scores]
    cases = [c for c in read_cohort(labels) if c.score in scores]
    parts = patient_split([c.score for c in cases], [c.patient_id for c in cases], seed=seed)
    split = {name: [cases[i] for i in index] for name, index in parts.items()}
    index = {s: k for k, s in enumerate(scores)}
    report = context.report if context is not None else _no_report
    read = iter(range(1, len(cases) + 1))

    def on_case(case) -> None:
        report(next(read), len(cases), f"patches of {case.case_id}")

    data = {
        name: _gather(group, index, limit, seed, tumor, step, on_case)
        for name, group in split.items()
    }
    log(", ".join(f"{n}: {len(d[1])} patches of {len(split[n])} slides" for n, d in data.items()))
    torch_device = choose_device(device)
    meta = {
        "arch": arch,
        "classes": classes,
        "input_size": input_size,
        "max_background": MAX_BACKGROUND,
        "tumor_rule": tumor,
        "aggregation": AGGREGATION,
        "normalizer": _fit_normalizer(data["train"][0]) if macenko else None,
    }
    transform = input_transform(meta)
    if recipe == "linear-head":
        model, meta["backbone"] = seeded_backbone(arch, seed, len(classes))
        meta["head"], probs = _train_linear_head(
            model, arch, data, transform, seed, torch_device, log, report
        )
    else:
        model = build_patch_cnn(arch, len(classes), seed=seed)
        x, y, _ = data["train"]
        result = train_patch_cnn(
            model, transform(x), y, epochs, batch_size, lr, seed, torch_device,
            progress=lambda done, total: report(done, total, "training epochs"),
        )  # fmt: skip
        meta["train_losses"] = result.losses
        probs = {
            n: predict_proba(model, transform(data[n][0]), device=torch_device)
            for n in ("validation", "test")
        }
    meta["metrics"] = {n: _metrics(probs[n], *data[n][1:], classes) for n in probs}
    meta["provenance"] = {
        "labels": Path(labels).name,
        "recipe": recipe,
        "seed": seed,
        "grid_step": step,
        "patches": {n: int(len(d[1])) for n, d in data.items()},
        "split_patients": {k: sorted({c.patient_id for c in v}) for k, v in split.items()},
    }
    meta |= extra or {}
    save_patch_cnn(out, model.cpu(), meta)
    return meta


def _no_report(done: int, total: int, message: str = "") -> None:
    """Progress nobody listens to."""
