"""Seed 003's attention MIL on HER2 IHC: ResNet-34 tile features, attention pooling.

Each IHC slide is cut into non-overlapping 224 x 224 tiles at 20x over the tissue;
a ResNet-34 (torchvision architecture, classifier removed, 512-d) embeds each tile;
attention pooling (Ilse et al. 2018: softmax over ``w^T tanh(V h)``) weights the
tiles into one slide vector; two heads predict the IHC score (0-3) and the HER2
status. Training samples slides with weights that balance the IHC scores (seed
003) and uses Adam (betas 0.9/0.999, weight decay 1e-8). ResNet-34 weights come
from a file the user gives or torchvision's local cache (``resnet34-b627a593.pth``),
never from the network; tests use explicitly seeded random weights.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torchvision
from torch import nn

from her2viewer.analysis.ihc import tissue_tile_grid
from her2viewer.errors import ModelError
from her2viewer.features.encoders import (
    Encoder,
    _seeded,
    encoder_for_bundle,
    file_sha256,
    load_weights_file,
    register_encoder,
)
from her2viewer.features.engine import extract_features
from her2viewer.features.store import read_features
from her2viewer.models.bundle import load_bundle, save_bundle
from her2viewer.models.checks import require_finite
from her2viewer.models.clam import AttnNet
from her2viewer.models.patch_cnn import load_weights
from her2viewer.slide import Slide

TILE = 224
MAGNIFICATION = 20.0
MODEL_KIND = "ihc_attention_mil"
SCORE_NAMES = ("0", "1+", "2+", "3+")
STATUS_NAMES = ("negative", "positive")
TORCHVISION_RESNET34_FILE = "resnet34-b627a593.pth"


def _resnet34() -> nn.Module:
    model = torchvision.models.resnet34(weights=None)
    model.fc = nn.Identity()
    return model


def resnet34_encoder(weights=None, random_seed: int | None = None) -> Encoder:
    """ResNet-34 tile encoder (512-d, 224 px, ImageNet normalisation).

    Parameters
    ----------
    weights : path or state dict, optional
        torchvision ResNet-34 weights (``fc`` ignored); by default torchvision's cache.
    random_seed : int, optional
        Seeded random weights instead (tests and demos only; recorded).

    Raises
    ------
    ModelError
        When no weights are available or they do not fit ResNet-34.
    """
    module = _seeded(_resnet34, random_seed)
    if random_seed is not None:
        provenance = {"weights": "random", "seed": int(random_seed)}
    else:
        if isinstance(weights, dict):
            state, provenance = weights, {"weights": "bundle"}
        else:
            path = Path(weights) if weights else _torchvision_cache()
            if not path.is_file():
                raise ModelError(
                    f"No ResNet-34 weights: put {TORCHVISION_RESNET34_FILE} in {path.parent} "
                    "or pass a weights file (random weights only for tests and demos)."
                )
            state = load_weights_file(path)
            provenance = {"weights": path.name, "sha256": file_sha256(path)}
        try:
            module.load_state_dict({k: v for k, v in state.items() if not k.startswith("fc.")})
        except RuntimeError as exc:
            raise ModelError(
                f"The weights are not a torchvision ResNet-34: {str(exc).splitlines()[0]}"
            ) from exc
    return Encoder("resnet34", module.eval(), 512, TILE, provenance=provenance)


def _torchvision_cache() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / TORCHVISION_RESNET34_FILE


register_encoder("resnet34", resnet34_encoder)


class IhcAttentionMIL(nn.Module):
    """Attention-MIL with an IHC-score head (4 classes) and a status head (2 classes)."""

    def __init__(self, in_dim: int = 512, hidden: int = 128, attention: int = 64):
        super().__init__()
        self.config = {"in_dim": in_dim, "hidden": hidden, "attention": attention}
        self.embed = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Dropout(0.25))
        self.attention = AttnNet(hidden, attention, 0.25, 1)
        self.score_head = nn.Linear(hidden, len(SCORE_NAMES))
        self.status_head = nn.Linear(hidden, len(STATUS_NAMES))

    def forward(self, features: torch.Tensor):
        """Return score logits (4,), status logits (2,) and attention weights (N,)."""
        h = self.embed(features)
        raw, h = self.attention(h)
        weights = torch.softmax(raw.squeeze(-1), dim=0)
        pooled = weights @ h
        return self.score_head(pooled), self.status_head(pooled), weights


@dataclass
class MilPrediction:
    """A slide's MIL prediction with per-tile attention (sums to 1)."""

    score: int
    status: str
    score_probs: np.ndarray
    status_probs: np.ndarray
    attention: np.ndarray


def _balanced_weights(scores: np.ndarray) -> np.ndarray:
    counts = np.bincount(scores, minlength=len(SCORE_NAMES)).astype(float)
    return 1.0 / counts[scores]


def train_ihc_mil(
    bags: list[np.ndarray],
    scores,
    statuses,
    epochs: int = 40,
    lr: float = 2e-4,
    seed: int = 0,
) -> IhcAttentionMIL:
    """Train the attention MIL on feature bags (one ``(N, D)`` array per slide).

    Parameters
    ----------
    bags : list of numpy.ndarray
        Tile features per slide.
    scores : sequence of int
        IHC scores 0..3.
    statuses : sequence of str
        ``positive`` / ``negative``.
    epochs : int
        Passes of ``len(bags)`` slides drawn with score-balancing weights.
    lr : float
        Adam learning rate.
    seed : int
        Seed of initialisation and sampling.
    """
    if not bags or len(bags) != len(scores) or len(bags) != len(statuses):
        raise ModelError("Training needs one score and one status per feature bag.")
    scores = np.asarray(scores, int)
    status = np.array([STATUS_NAMES.index(s) for s in statuses])
    generator = torch.Generator().manual_seed(seed)
    model = _seeded(lambda: IhcAttentionMIL(bags[0].shape[1]), seed)
    optimiser = torch.optim.Adam(model.parameters(), lr, betas=(0.9, 0.999), weight_decay=1e-8)
    sampler = torch.utils.data.WeightedRandomSampler(
        _balanced_weights(scores), len(bags), replacement=True, generator=generator
    )
    tensors = [torch.as_tensor(b, dtype=torch.float32) for b in bags]
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # dropout: the same run for the same seed
        _fit(model, optimiser, loss_fn, sampler, tensors, scores, status, epochs)
    return model.eval()


def _fit(model, optimiser, loss_fn, sampler, tensors, scores, status, epochs: int) -> None:
    for _ in range(epochs):
        for i in sampler:
            score_logits, status_logits, _ = model(tensors[i])
            loss = loss_fn(score_logits[None], torch.tensor([scores[i]])) + loss_fn(
                status_logits[None], torch.tensor([status[i]])
            )
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()


@torch.inference_mode()
def predict_mil(
    model: IhcAttentionMIL, features: np.ndarray, source: str = "the slide"
) -> MilPrediction:
    """Predict one slide from its tile features; ``source`` names the slide in errors.

    Raises
    ------
    ModelError
        When there are no features, or the features or outputs are not finite.
    """
    if len(features) == 0:
        raise ModelError("The slide has no tile features to predict from.")
    require_finite(features, f"The tile features of {source}")
    score_logits, status_logits, attention = model(torch.as_tensor(features, dtype=torch.float32))
    score_probs = torch.softmax(score_logits, 0).numpy()
    status_probs = torch.softmax(status_logits, 0).numpy()
    require_finite(np.r_[score_probs, status_probs], f"The IHC MIL output on {source}")
    return MilPrediction(
        int(score_probs.argmax()),
        STATUS_NAMES[int(status_probs.argmax())],
        score_probs,
        status_probs,
        attention.numpy(),
    )


def attention_map(
    coords: np.ndarray, attention: np.ndarray, tile_level0: int, width: int, height: int
) -> tuple[np.ndarray, float]:
    """Place tile attention on a grid, one cell per tile, as percentiles (0..1).

    Returns
    -------
    (numpy.ndarray, float)
        float32 map (NaN where there is no tile) and its downsample (level-0 px per cell).
    """
    heat = np.full((math.ceil(height / tile_level0), math.ceil(width / tile_level0)), np.nan)
    ranks = np.argsort(np.argsort(attention)) / max(len(attention) - 1, 1)
    cells = np.asarray(coords) // tile_level0
    heat[cells[:, 1], cells[:, 0]] = ranks
    return heat.astype(np.float32), float(tile_level0)


def slide_features(slide: Slide, encoder: Encoder, out_path: str | Path, device="auto"):
    """Extract (or reuse) the slide's 224 px 20x tile features into ``out_path`` (h5).

    Raises
    ------
    NotEvaluableError
        When the slide has no tissue tile.
    """
    out_path = Path(out_path)
    if not out_path.exists():
        grid = tissue_tile_grid(slide, MAGNIFICATION, TILE)
        extract_features(slide, grid, encoder, out_path, device=device, workers=1)
    return read_features(out_path)


def save_mil(path: str | Path, model: IhcAttentionMIL, encoder: Encoder, provenance: dict):
    """Write the model as a bundle (``bundle.json`` + ``model.safetensors``)."""
    meta = {
        "model_kind": MODEL_KIND,
        "encoder": encoder.describe(),
        "patch_size": TILE,
        "magnification": MAGNIFICATION,
        "class_names": {"score": list(SCORE_NAMES), "status": list(STATUS_NAMES)},
        "architecture": model.config,
        "provenance": provenance,
    }
    return save_bundle(path, meta, {"model": model.state_dict()})


def load_mil(path: str | Path) -> tuple[IhcAttentionMIL, Encoder]:
    """Load a bundle written by :func:`save_mil`: the model and its encoder."""
    bundle = load_bundle(path, MODEL_KIND)
    model = IhcAttentionMIL(**bundle.meta["architecture"])
    load_weights(model, bundle.state_dict("model"), str(path))
    return model, encoder_for_bundle(bundle.meta, bundle.tensors)
