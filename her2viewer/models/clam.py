"""CLAM: clustering-constrained attention multiple-instance learning (Lu et al. 2021).

The modules below keep the exact parameter layout of the reference implementation
(``models/model_clam.py`` in mahmoodlab/CLAM), so that its checkpoints load with
:func:`load_clam_checkpoint` and give the same logits, probabilities and raw
attention. Checkpoints from every historical layout are normalised to the current
one (``attention_net.3.*``, Dropout modules always present, possibly with p=0).
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from her2viewer.errors import ModelError
from her2viewer.models.bundle import is_bundle, load_bundle, save_bundle, shipped_bundle
from her2viewer.models.checks import require_finite
from her2viewer.paths import RESOURCES_DIR
from her2viewer.weights import load_tensors

#: Reference sizes ``[embed_dim, hidden, attention]`` by name (CLAM's ``size_dict``).
SIZES = {"small": (512, 256), "big": (512, 384)}

EXPECTED_LAYOUTS = (
    "current (attention_net.0.weight, attention_net.3.attention_a.0.weight ...), "
    "legacy without dropout (attention_net.2.*), DataParallel (module. or attention_net.module.), "
    "ungated (attention_net.3.module.0.weight), optional instance_loss_fn.labels, "
    "with classifiers.weight (CLAM_SB) or classifiers.0.weight (CLAM_MB)"
)


@dataclass(frozen=True)
class ClamConfig:
    """Architecture of a CLAM model; everything needed to rebuild it.

    Attributes
    ----------
    model_type : str
        ``"clam_sb"`` (one attention branch) or ``"clam_mb"`` (one per class).
    n_classes : int
    embed_dim : int
        Feature size E of the input patches (1024 for ``resnet50_trunc``).
    hidden_dim, attention_dim : int
        The two layer sizes: small is (512, 256), big is (512, 384).
    gated : bool
        Gated attention (tanh x sigmoid) or plain (tanh).
    dropout : float
    k_sample : int
        Patches per side sampled for the instance-level clustering loss.
    subtyping : bool
        Also penalise the top patches of the out-of-class branches.
    standardize : bool
        Our extension (not in reference CLAM): standardise features with stored
        per-dimension ``feature_mean`` / ``feature_std`` buffers before the network.
    """

    model_type: str = "clam_sb"
    n_classes: int = 2
    embed_dim: int = 1024
    hidden_dim: int = 512
    attention_dim: int = 256
    gated: bool = True
    dropout: float = 0.25
    k_sample: int = 8
    subtyping: bool = False
    standardize: bool = False

    @classmethod
    def from_size(cls, size: str = "small", **kwargs) -> ClamConfig:
        """Return a config with the reference ``small`` or ``big`` layer sizes."""
        if size not in SIZES:
            raise ModelError(f"Unknown CLAM size '{size}'; use one of {', '.join(SIZES)}.")
        hidden, attention = SIZES[size]
        return cls(hidden_dim=hidden, attention_dim=attention, **kwargs)

    def to_dict(self) -> dict:
        """Return the config as a JSON-ready dictionary."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ClamConfig:
        """Rebuild a config written by :meth:`to_dict` (unknown keys are ignored)."""
        names = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in names})


class AttnNet(nn.Module):
    """Plain attention: Linear -> tanh -> Dropout -> Linear (reference ``Attn_Net``)."""

    def __init__(self, in_dim: int, attention_dim: int, dropout: float, n_out: int):
        super().__init__()
        self.module = nn.Sequential(
            nn.Linear(in_dim, attention_dim),
            nn.Tanh(),
            nn.Dropout(dropout),
            nn.Linear(attention_dim, n_out),
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.module(x), x


class AttnNetGated(nn.Module):
    """Gated attention: (tanh branch * sigmoid branch) -> Linear (``Attn_Net_Gated``)."""

    def __init__(self, in_dim: int, attention_dim: int, dropout: float, n_out: int):
        super().__init__()
        self.attention_a = nn.Sequential(
            nn.Linear(in_dim, attention_dim), nn.Tanh(), nn.Dropout(dropout)
        )
        self.attention_b = nn.Sequential(
            nn.Linear(in_dim, attention_dim), nn.Sigmoid(), nn.Dropout(dropout)
        )
        self.attention_c = nn.Linear(attention_dim, n_out)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.attention_c(self.attention_a(x) * self.attention_b(x)), x


class SmoothTop1SVM(nn.Module):
    """Smooth top-1 multiclass SVM loss (Berrada et al. 2018), as used by CLAM.

    Follows the ``topk`` package: samples whose top-2 score gap exceeds
    ``tau * log(1000)`` use the hard hinge, the others ``tau * logsumexp(./tau)``.
    The ``labels`` buffer mirrors the reference so state dicts match.
    """

    def __init__(self, n_classes: int, alpha: float = 1.0, tau: float = 1.0):
        super().__init__()
        self.register_buffer("labels", torch.arange(n_classes))
        self.alpha = alpha
        self.tau = tau
        self.thresh = 1e3

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        margin = self.alpha * (y[:, None] != self.labels[None, :]).to(x.dtype)
        shifted = x + margin - x.gather(1, y[:, None])
        top = x.topk(2, dim=1).values
        hard = (top[:, 0] - top[:, 1]) >= self.tau * math.log(self.thresh)
        smooth_loss = self.tau * torch.logsumexp(shifted / self.tau, dim=1)
        hard_loss = shifted.max(dim=1).values
        return torch.where(hard, hard_loss, smooth_loss).sum() / x.shape[0]


def make_loss(name: str, n_classes: int) -> nn.Module:
    """Return the bag or instance loss by name: ``"svm"`` (smooth top-1) or ``"ce"``."""
    if name == "svm":
        return SmoothTop1SVM(n_classes)
    if name == "ce":
        return nn.CrossEntropyLoss()
    raise ModelError(f"Unknown loss '{name}'; use 'svm' or 'ce'.")


class CLAM(nn.Module):
    """CLAM_SB / CLAM_MB with the reference parameter names.

    ``forward`` returns ``(logits, Y_prob, Y_hat, A_raw, results)`` like the
    reference: ``A_raw`` is the raw (pre-softmax) attention, one row per branch.
    """

    def __init__(self, config: ClamConfig, instance_loss: str = "ce"):
        super().__init__()
        if config.model_type not in ("clam_sb", "clam_mb"):
            raise ModelError(f"Unknown CLAM type '{config.model_type}'; use clam_sb or clam_mb.")
        self.config = config
        multi = config.model_type == "clam_mb"
        n_branches = config.n_classes if multi else 1
        attn_cls = AttnNetGated if config.gated else AttnNet
        self.attention_net = nn.Sequential(
            nn.Linear(config.embed_dim, config.hidden_dim),
            nn.ReLU(),
            nn.Dropout(config.dropout),
            attn_cls(config.hidden_dim, config.attention_dim, config.dropout, n_branches),
        )
        if multi:
            self.classifiers = nn.ModuleList(
                [nn.Linear(config.hidden_dim, 1) for _ in range(config.n_classes)]
            )
        else:
            self.classifiers = nn.Linear(config.hidden_dim, config.n_classes)
        self.instance_classifiers = nn.ModuleList(
            [nn.Linear(config.hidden_dim, 2) for _ in range(config.n_classes)]
        )
        self.instance_loss_fn = make_loss(instance_loss, 2)
        if config.standardize:
            self.register_buffer("feature_mean", torch.zeros(config.embed_dim))
            self.register_buffer("feature_std", torch.ones(config.embed_dim))

    def _inst_eval(self, attention, h, classifier, in_class: bool):
        k = min(self.config.k_sample, h.shape[0])
        top_ids = torch.topk(attention, k).indices
        if in_class:
            bottom_ids = torch.topk(-attention, k).indices
            instances = torch.cat([h[top_ids], h[bottom_ids]])
            targets = torch.cat([torch.ones(k), torch.zeros(k)]).long().to(h.device)
        else:
            instances = h[top_ids]
            targets = torch.zeros(k, dtype=torch.long, device=h.device)
        logits = classifier(instances)
        return self.instance_loss_fn(logits, targets), logits.argmax(1), targets

    def _instance_loss(self, attention: torch.Tensor, h: torch.Tensor, label: torch.Tensor):
        total = h.new_zeros(())
        preds, targets = [], []
        for i, classifier in enumerate(self.instance_classifiers):
            branch = attention[i] if self.config.model_type == "clam_mb" else attention[0]
            in_class = int(label) == i
            if not in_class and not self.config.subtyping:
                continue
            loss, pred, target = self._inst_eval(branch, h, classifier, in_class)
            total = total + loss
            preds.append(pred)
            targets.append(target)
        if self.config.subtyping:
            total = total / len(self.instance_classifiers)
        return total, torch.cat(preds), torch.cat(targets)

    def _attend(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.config.standardize:
            h = (h - self.feature_mean) / self.feature_std
        return self.attention_net(h)

    def attention_only(self, h: torch.Tensor) -> torch.Tensor:
        """Raw attention ``K x N`` of patch features ``h`` (N x E), as CLAM's
        ``attention_only=True``: what :meth:`forward` returns as ``A_raw``."""
        return self._attend(h)[0].transpose(1, 0)

    def forward(
        self,
        h: torch.Tensor,
        label: torch.Tensor | None = None,
        instance_eval: bool = False,
    ):
        """Classify one bag of patch features ``h`` (N x E).

        Returns
        -------
        tuple
            ``(logits 1 x C, Y_prob 1 x C, Y_hat 1 x 1, A_raw K x N, results)``;
            ``results`` holds ``instance_loss``, ``inst_preds`` and ``inst_labels``
            when ``instance_eval`` is true.
        """
        attention, h = self._attend(h)
        attention_raw = attention.transpose(1, 0)
        attention = F.softmax(attention_raw, dim=1)
        results = {}
        if instance_eval:
            if label is None:
                raise ModelError("Instance evaluation needs the bag label.")
            loss, preds, targets = self._instance_loss(attention, h, label)
            results = {"instance_loss": loss, "inst_preds": preds, "inst_labels": targets}
        pooled = attention @ h
        if self.config.model_type == "clam_mb":
            logits = torch.cat([c(pooled[i]) for i, c in enumerate(self.classifiers)])[None, :]
        else:
            logits = self.classifiers(pooled)
        y_hat = torch.topk(logits, 1, dim=1).indices
        return logits, F.softmax(logits, dim=1), y_hat, attention_raw, results


@dataclass
class ClamPrediction:
    """A slide-level CLAM result.

    Attributes
    ----------
    probabilities : np.ndarray
        (C,) class probabilities.
    prediction : int
        Index of the most probable class.
    attention : np.ndarray
        (K, N) raw attention, one row per branch, in the order of the patches.
    """

    probabilities: np.ndarray
    prediction: int
    attention: np.ndarray

    def branch_attention(self) -> np.ndarray:
        """Raw attention of the branch that explains the prediction (MB: predicted class)."""
        row = self.prediction if self.attention.shape[0] > 1 else 0
        return self.attention[row]


@torch.inference_mode()
def predict(
    model: CLAM, features: np.ndarray | torch.Tensor, source: str = "The features"
) -> ClamPrediction:
    """Run a CLAM model on one slide's features.

    Parameters
    ----------
    model : CLAM
    features : array (N, E)
    source : str
        What the features come from, naming the file (e.g. ``"Features file a.h5"``).

    Raises
    ------
    ModelError
        When the feature size does not match the model's embedding size, or the
        features (after float32 conversion) or the outputs are not finite.
    """
    h = torch.as_tensor(np.asarray(features, dtype=np.float32))
    check_features(model.config, h)
    require_finite(h, source)
    model.eval()
    device = next(model.parameters()).device
    _, prob, y_hat, attention_raw, _ = model(h.to(device))
    require_finite(prob, f"The CLAM output on {source[0].lower()}{source[1:]}")
    require_finite(attention_raw, f"The CLAM attention on {source[0].lower()}{source[1:]}")
    return ClamPrediction(
        probabilities=prob[0].float().cpu().numpy(),
        prediction=int(y_hat.item()),
        attention=attention_raw.float().cpu().numpy(),
    )


def check_features(config: ClamConfig, features: torch.Tensor | np.ndarray) -> None:
    """Raise :class:`ModelError` unless ``features`` is a non-empty (N, E) array."""
    shape = tuple(features.shape)
    if len(shape) != 2 or shape[0] == 0:
        raise ModelError(f"Features must be a non-empty (patches x dims) array, got {shape}.")
    if shape[1] != config.embed_dim:
        raise ModelError(
            f"Features have {shape[1]} dimensions but the model expects {config.embed_dim}; "
            "extract them with the encoder the model was trained on."
        )


# --- reference checkpoints -------------------------------------------------------------

_ATTN_RE = re.compile(r"^attention_net\.(\d+)\.(.+)$")
_UNGATED_LAST_RE = re.compile(r"^module\.([23])\.(weight|bias)$")


def normalise_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map any historical CLAM key layout onto the current one.

    Drops ``instance_loss_fn.*`` buffers, strips DataParallel ``module.``
    prefixes, moves the legacy attention block ``attention_net.2`` to
    ``attention_net.3`` and the ungated final layer ``module.2`` to ``module.3``.
    """
    out = {}
    for key, value in state.items():
        if key.startswith("instance_loss_fn."):
            continue
        name = key.removeprefix("module.").replace("attention_net.module.", "attention_net.")
        match = _ATTN_RE.match(name)
        if match and match.group(1) in ("2", "3"):
            rest = _UNGATED_LAST_RE.sub(r"module.3.\2", match.group(2))
            name = f"attention_net.3.{rest}"
        out[name] = value
    return out


def infer_config(state: dict[str, torch.Tensor], **overrides) -> ClamConfig:
    """Infer a :class:`ClamConfig` from the tensor shapes of a normalised state dict.

    Raises
    ------
    ModelError
        When the keys match none of the known CLAM layouts.
    """
    try:
        hidden, embed = state["attention_net.0.weight"].shape
        gated = "attention_net.3.attention_a.0.weight" in state
        first = "attention_a.0" if gated else "module.0"
        last = "attention_c" if gated else "module.3"
        attention_dim = state[f"attention_net.3.{first}.weight"].shape[0]
        n_branches = state[f"attention_net.3.{last}.weight"].shape[0]
        if "classifiers.weight" in state:
            model_type, n_classes = "clam_sb", state["classifiers.weight"].shape[0]
        else:
            model_type = "clam_mb"
            n_classes = sum(1 for k in state if re.fullmatch(r"classifiers\.\d+\.weight", k))
    except (KeyError, ValueError) as exc:
        raise ModelError(_layout_message(state)) from exc
    expected_branches = n_classes if model_type == "clam_mb" else 1
    if n_classes < 1 or n_branches != expected_branches:
        raise ModelError(_layout_message(state))
    fields = dict(
        model_type=model_type,
        n_classes=int(n_classes),
        embed_dim=int(embed),
        hidden_dim=int(hidden),
        attention_dim=int(attention_dim),
        gated=gated,
    )
    fields.update(overrides)
    return ClamConfig(**fields)


def _layout_message(state: dict) -> str:
    found = ", ".join(list(state)[:4]) or "no tensors"
    return f"Not a CLAM checkpoint: expected one of the layouts {EXPECTED_LAYOUTS}; found {found}."


def clam_from_state_dict(state: dict[str, torch.Tensor], **overrides) -> CLAM:
    """Build a CLAM model from a state dict in any known layout and load it strictly."""
    clean = normalise_state_dict(state)
    model = CLAM(infer_config(clean, **overrides))
    expected = set(model.state_dict()) - {"instance_loss_fn.labels"}
    missing, unexpected = expected - set(clean), set(clean) - expected
    if missing or unexpected:
        detail = sorted(missing)[:3] + sorted(unexpected)[:3]
        raise ModelError(f"{_layout_message(clean)[:-1]}; mismatched keys: {', '.join(detail)}.")
    try:
        model.load_state_dict(clean, strict=False)
    except RuntimeError as exc:
        raise ModelError(f"CLAM checkpoint tensors have inconsistent shapes: {exc}") from exc
    return model.eval()


def load_clam_checkpoint(path: str | Path, **overrides) -> CLAM:
    """Load a reference CLAM checkpoint (``s_<fold>_checkpoint.pt``) safely.

    Parameters
    ----------
    path : path
        A ``torch.save``-d state dict, loaded with ``weights_only=True``.
    **overrides
        Config fields that shapes cannot tell (``dropout``, ``k_sample``, ``subtyping``).

    Raises
    ------
    ModelError
        Missing or unreadable file, or keys that match no known layout.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"CLAM checkpoint not found: {path}.")
    state = load_tensors(path)
    for wrapper in ("state_dict", "model_state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(f"{path.name} does not hold a state dict of tensors.")
    for tensor in state.values():
        require_finite(tensor, f"Checkpoint {path.name}")
    return clam_from_state_dict(state, **overrides)


# --- bundles -----------------------------------------------------------------------------

BUNDLE_KIND = "clam"


def save_clam_bundle(path: str | Path, model: CLAM, meta: dict) -> Path:
    """Save a CLAM model as a bundle (``bundle.json`` + ``model.safetensors``).

    Parameters
    ----------
    path : path
        Folder, or a ``.zip`` file.
    model : CLAM
    meta : dict
        Manifest fields: ``class_names``, ``encoder``, ``patch_size``,
        ``magnification``, ``thresholds``, ``provenance`` ...; the architecture
        (``config``) and ``model_kind`` are filled in.
    """
    manifest = {**meta, "model_kind": BUNDLE_KIND, "config": model.config.to_dict()}
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("instance_loss_fn")}
    return save_bundle(path, manifest, {"model": state})


def load_clam(path: str | Path) -> tuple[CLAM, dict]:
    """Load a CLAM bundle or a reference CLAM checkpoint.

    Returns
    -------
    model : CLAM
        In eval mode, on the CPU.
    meta : dict
        The bundle manifest; for a plain checkpoint, generic class names and no encoder.
    """
    path = Path(path)
    if not is_bundle(path):
        model = load_clam_checkpoint(path)
        names = [f"class_{i}" for i in range(model.config.n_classes)]
        return model, {"model_kind": BUNDLE_KIND, "class_names": names, "source": path.name}
    bundle = load_bundle(path, BUNDLE_KIND)
    config = ClamConfig.from_dict(bundle.meta["config"])
    _check_weight_shapes(config, bundle.state_dict("model"), path)
    model = CLAM(config)
    message = f"{path}: the weights do not fit the CLAM architecture in bundle.json."
    try:
        result = model.load_state_dict(bundle.state_dict("model"), strict=False)
    except RuntimeError as exc:
        raise ModelError(message) from exc
    missing = [k for k in result.missing_keys if not k.startswith("instance_loss_fn")]
    if missing or result.unexpected_keys:
        raise ModelError(message)
    return model.eval(), bundle.meta


def _check_weight_shapes(config: ClamConfig, state: dict[str, torch.Tensor], path: Path) -> None:
    """Compare the architecture ``bundle.json`` declares with the weights, before building it.

    Raises
    ------
    ModelError
        Naming the first ``config`` field the weights contradict.
    """
    found = infer_config(normalise_state_dict(state))
    for name in ("model_type", "n_classes", "embed_dim", "hidden_dim", "attention_dim", "gated"):
        declared, actual = getattr(config, name), getattr(found, name)
        if declared != actual:
            raise ModelError(
                f"{path}: the weights do not fit bundle.json, whose config.{name} is "
                f"{declared} while model.safetensors holds {actual}."
            )


#: CLAM demo bundle trained on the synthetic cohort (``her2viewer.training.demo_clam``).
DEMO_CLAM_BUNDLE = RESOURCES_DIR / "models" / "clam_synthetic_demo"


def demo_clam_bundle_path() -> Path:
    """The CLAM demo bundle shipped in ``resources/`` (synthetic, no clinical claim)."""
    return shipped_bundle(
        DEMO_CLAM_BUNDLE, "CLAM demo bundle", "python -m her2viewer.training.demo_clam"
    )
