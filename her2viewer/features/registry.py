"""The encoder registry: one table of the pathology foundation models and how to run them.

Each :class:`EncoderSpec` row says how to build the network (a ``timm`` constructor and
its keyword arguments), how tiles are prepared (resize, centre crop, normalisation),
how patch tokens become one feature vector (pooling), the feature size, the
magnification the model was trained at, where its weights come from and under which
licence. The constants follow the model cards and TRIDENT's loaders
(github.com/mahmoodlab/TRIDENT, ``trident/patch_encoder_models/load.py`` at a91fa84),
cited per row. Every ViT row has a ``small`` variant (depth reduced, width kept, so the
feature size is the real one) for tests and CPU benchmarks; it is flagged in the table
and recorded in the provenance of features made with it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from her2viewer.errors import ModelError
from her2viewer.features import conch, hub
from her2viewer.features.encoders import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Encoder,
    _seeded,
    file_sha256,
    load_weights_file,
    register_encoder,
)

CC_BY_NC_ND = "CC-BY-NC-ND-4.0, gated: accept the terms on the model card"
HIBOU_MEAN, HIBOU_STD = (0.7068, 0.5755, 0.722), (0.195, 0.2316, 0.1816)
HOPTIMUS_MEAN = (0.707223, 0.578729, 0.703617)
HOPTIMUS_STD = (0.211883, 0.230117, 0.177517)
LUNIT_MEAN = (0.70322989, 0.53606487, 0.66096631)
LUNIT_STD = (0.21716536, 0.26081574, 0.20723464)
HALF = (0.5, 0.5, 0.5)
#: Hibou's SwiGLU MLP (HistAI's ``build_model``: ``ffn_layer="swiglufused"``): 4 x 1024 wide,
#: 2/3 of it rounded up to 8 = 2736 per half, i.e. 5472 = 1024 x 5.34375 for timm's packed layer.
HIBOU_MLP_RATIO = 5.34375
#: The CI variant of every ViT: one block, same width (so the same feature size).
SMALL = {"depth": 1}


@dataclass(frozen=True)
class EncoderSpec:
    """One registered encoder.

    Attributes
    ----------
    name : str
        Our registry name (``--encoder``).
    architecture : str
        What the network is, in words.
    constructor : str
        The ``timm.create_model`` name ("" for a built-in network).
    kwargs : dict
        Keyword arguments of the constructor.
    input_size : int
        Side the network sees.
    resize_to : int
        Side tiles are resized to before a centre crop of ``input_size``.
    interpolation : str
        ``"bilinear"`` or ``"bicubic"`` (antialiased).
    mean, std : tuple of float
        Normalisation of [0, 1] RGB.
    dim : int
        Feature size.
    pooling : str
        ``"cls"``, ``"mean"`` (of patch tokens or a CNN's map), ``"cls+mean"`` or
        ``"attention"`` (a learnt attention-pool head).
    magnification : str
        What the model was trained at.
    licence : str
        Under which terms the weights are obtained.
    card : str
        The model card (the citation of the constants).
    hf_repo : str
        Hugging Face repository of the weights ("" when not there).
    weights_files : tuple of str
        File names looked for in a weights folder, in order.
    trident_name : str
        TRIDENT's ``enc_name`` (its ``features_<enc_name>`` folder).
    small : dict
        Constructor overrides of the CI variant (``{}``: the real one is small enough).
    sha256 : str
        A pinned SHA-256 of the weights file (checked when set; the variable
        ``<env_var>_SHA256`` pins one too). Files from a Hugging Face cache are always
        checked against the hub's digest, their blob's name.
    precision : str
        What it computes in on CUDA (``"fp16"``, ``"bf16"`` or ``"fp32"``): TRIDENT's
        ``precision`` of the model (load.py), so that features match TRIDENT's; on
        the CPU everything runs in float32.
    note : str
        Caveats (e.g. a checkpoint format not mapped to the timm network).
    head : callable, optional
        Wraps the timm trunk into the model's own network (head and forward) where the
        official checkpoint has one timm lacks (CONCH v1.5); None: :class:`PooledViT`,
        and the checkpoint holds the trunk alone.
    convert : callable, optional
        Maps the official checkpoint's state dict to the network's (after the
        training wrappers' prefixes are dropped).
    """

    name: str
    architecture: str
    constructor: str
    kwargs: dict
    input_size: int
    resize_to: int
    interpolation: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    dim: int
    pooling: str
    magnification: str
    licence: str
    card: str
    hf_repo: str = ""
    weights_files: tuple[str, ...] = ("model.safetensors", "pytorch_model.bin")
    trident_name: str = ""
    small: dict = field(default_factory=lambda: dict(SMALL))
    sha256: str = ""
    precision: str = "fp16"
    note: str = ""
    head: Callable[[nn.Module], nn.Module] | None = None
    convert: Callable[[dict], dict] | None = None

    @property
    def env_var(self) -> str:
        """The environment variable naming this encoder's weights file or folder."""
        return hub.weights_env_var(self.name)

    def row(self) -> dict:
        """JSON-ready row for ``encoders list --json``."""
        return {
            "name": self.name,
            "dim": self.dim,
            "architecture": self.architecture,
            "constructor": self.constructor,
            "kwargs": {k: _plain(v) for k, v in self.kwargs.items()},
            "input_size": self.input_size,
            "resize": f"resize {self.resize_to} ({self.interpolation}), centre crop "
            f"{self.input_size}",
            "mean": list(self.mean),
            "std": list(self.std),
            "pooling": self.pooling,
            "magnification": self.magnification,
            "licence": self.licence,
            "card": self.card,
            "hf_repo": self.hf_repo,
            "env_var": self.env_var,
            "trident_name": self.trident_name,
            "small_variant": {k: _plain(v) for k, v in self.small.items()},
            "precision": self.precision,
            "note": self.note,
        }


def _plain(value):
    """A constructor argument as JSON (classes by their name)."""
    return (
        value
        if isinstance(value, (int, float, str, bool))
        else getattr(value, "__name__", str(value))
    )


def _swiglu() -> dict:
    """The SwiGLU MLP of UNI2-h and Virchow2 (timm's packed variant with SiLU)."""
    from timm.layers import SwiGLUPacked

    return {"mlp_layer": SwiGLUPacked, "act_layer": nn.SiLU}


def _vit(name: str, architecture: str, constructor: str, kwargs: dict, **row) -> EncoderSpec:
    """A ViT row; unless given, 224 px in, ImageNet normalisation, CLS pooling, 20x."""
    defaults = {
        "input_size": 224,
        "resize_to": row.get("input_size", 224),
        "interpolation": "bilinear",
        "mean": IMAGENET_MEAN,
        "std": IMAGENET_STD,
        "pooling": "cls",
        "magnification": "20x",
    }
    kwargs = {"num_classes": 0, "dynamic_img_size": True, **kwargs}
    return EncoderSpec(name, architecture, constructor, kwargs, **(defaults | row))


TRIDENT = "github.com/mahmoodlab/TRIDENT trident/patch_encoder_models/load.py"
UNI2_KWARGS = {
    "img_size": 224,
    "patch_size": 14,
    "depth": 24,
    "num_heads": 24,
    "init_values": 1e-5,
    "embed_dim": 1536,
    "mlp_ratio": 2.66667 * 2,
    "no_embed_class": True,
    "reg_tokens": 8,
    "swiglu": True,
}
VIRCHOW2_KWARGS = {
    "img_size": 224,
    "init_values": 1e-5,
    "reg_tokens": 4,
    "mlp_ratio": 5.3375,
    "global_pool": "",
    "swiglu": True,
}
GIGAPATH_KWARGS = {
    "img_size": 224,
    "patch_size": 16,
    "embed_dim": 1536,
    "depth": 40,
    "num_heads": 24,
    "init_values": 1e-5,
    "mlp_ratio": 5.33334,
}
KAIKO = "kaiko_ai_towards_large_pathology_fms"


def _specs() -> tuple[EncoderSpec, ...]:
    return (
        EncoderSpec(
            "resnet50_trunc",
            "ResNet-50 stem + layer1-3, average pool (CLAM)",
            constructor="",
            kwargs={},
            input_size=224,
            resize_to=224,
            interpolation="bilinear",
            mean=IMAGENET_MEAN,
            std=IMAGENET_STD,
            dim=1024,
            pooling="mean",
            magnification="20x",
            licence="BSD-3-Clause (torchvision ImageNet weights)",
            card="github.com/mahmoodlab/CLAM models/resnet_custom.py",
            small={},
            weights_files=("resnet50-0676ba61.pth",),
            trident_name="resnet50",
            note="On CUDA it autocasts to float16 for throughput where TRIDENT keeps float32; "
            "benchmarks/check_cuda.py holds its features to the CPU's within tolerance.",
        ),
        _vit(
            "uni",
            "ViT-L/16",
            "vit_large_patch16_224",
            {"img_size": 224, "patch_size": 16, "init_values": 1e-5},
            dim=1024,
            licence=CC_BY_NC_ND,
            card=f"huggingface.co/MahmoodLab/UNI; {TRIDENT}",
            hf_repo="MahmoodLab/UNI",
            weights_files=("pytorch_model.bin",),
            trident_name="uni_v1",
        ),
        _vit(
            "uni2_h",
            "ViT-H/14 (giant config, SwiGLU, 8 registers)",
            "vit_giant_patch14_224",
            UNI2_KWARGS,
            dim=1536,
            licence=CC_BY_NC_ND,
            precision="bf16",
            card=f"huggingface.co/MahmoodLab/UNI2-h; {TRIDENT}",
            hf_repo="MahmoodLab/UNI2-h",
            weights_files=("pytorch_model.bin",),
            trident_name="uni_v2",
        ),
        _vit(
            "conch_v1_5",
            "ViT-L/16 (224 px positions stretched to 448) + attention pool + LayerNorm -> 768",
            "vit_large_patch16_224",
            {"img_size": 224, "init_values": 1.0},
            input_size=448,
            dim=768,
            pooling="attention",
            licence=CC_BY_NC_ND,
            card=f"huggingface.co/MahmoodLab/conchv1_5; {TRIDENT} (Conchv15InferenceEncoder) and "
            "model_zoo/conchv1_5/conchv1_5.py (CONCHVisionTower)",
            hf_repo="MahmoodLab/conchv1_5",
            weights_files=("pytorch_model_vision.bin",),
            trident_name="conch_v15",
            head=conch.ConchVisionTower,
            convert=conch.from_official,
        ),
        _vit(
            "virchow2",
            "ViT-H/14 (SwiGLU, 4 registers)",
            "vit_huge_patch14_224",
            VIRCHOW2_KWARGS,
            dim=2560,
            pooling="cls+mean",
            interpolation="bicubic",
            magnification="5x, 10x, 20x, 40x (mixed)",
            licence=CC_BY_NC_ND,
            card=f"huggingface.co/paige-ai/Virchow2; {TRIDENT}",
            hf_repo="paige-ai/Virchow2",
            trident_name="virchow2",
        ),
        _vit(
            "prov_gigapath",
            "ViT-g/16 (DINOv2 giant, patch 16)",
            "vit_giant_patch14_dinov2",
            GIGAPATH_KWARGS,
            dim=1536,
            resize_to=256,
            interpolation="bicubic",
            magnification="20x (0.5 um/px)",
            licence="Apache-2.0, gated (research use per the model card)",
            card=f"huggingface.co/prov-gigapath/prov-gigapath; {TRIDENT}",
            hf_repo="prov-gigapath/prov-gigapath",
            weights_files=("pytorch_model.bin",),
            trident_name="gigapath",
        ),
        *(
            _vit(
                f"h_optimus_{n}",
                "ViT-g/14 (DINOv2 giant, 4 registers)",
                "vit_giant_patch14_reg4_dinov2",
                {"img_size": 224, "global_pool": "token", "init_values": 1e-5},
                dim=1536,
                mean=HOPTIMUS_MEAN,
                std=HOPTIMUS_STD,
                magnification="20x (0.5 um/px)",
                licence=licence,
                card=f"huggingface.co/bioptimus/H-optimus-{n}; {TRIDENT}",
                hf_repo=f"bioptimus/H-optimus-{n}",
                trident_name=f"hoptimus{n}",
            )
            for n, licence in (
                ("0", "Apache-2.0"),
                ("1", "gated: non-commercial terms on the model card"),
            )
        ),
        _vit(
            "phikon_v2",
            "ViT-L/16 (DINOv2)",
            "vit_large_patch16_224",
            {"img_size": 224, "init_values": 1e-5},
            dim=1024,
            licence="Owkin non-commercial licence (model card)",
            card=f"huggingface.co/owkin/phikon-v2; {TRIDENT}",
            hf_repo="owkin/phikon-v2",
            precision="fp32",
            trident_name="phikon_v2",
            note="the card's transformers Dinov2Model checkpoint is renamed to timm's keys",
        ),
        _vit(
            "hibou_l",
            "ViT-L/14 (DINOv2, 4 registers, SwiGLU)",
            "vit_large_patch14_reg4_dinov2",
            {"img_size": 224, "swiglu": True, "mlp_ratio": HIBOU_MLP_RATIO},
            dim=1024,
            interpolation="bicubic",
            mean=HIBOU_MEAN,
            std=HIBOU_STD,
            magnification="mixed (model card)",
            licence="Apache-2.0",
            card=f"huggingface.co/histai/hibou-L; github.com/HistAI/hibou "
            f"hibou/models/__init__.py at c453bbe (build_model); {TRIDENT}",
            hf_repo="histai/hibou-L",
            precision="fp32",
            trident_name="hibou_l",
            note="the card's transformers checkpoint (Dinov2 with registers, remote code) is "
            "renamed to timm's keys; TRIDENT's feature is its pooler output, the normed CLS token",
        ),
        _vit(
            "kaiko_vitb8",
            "ViT-B/8 (DINO)",
            "vit_base_patch8_224",
            {"img_size": 224},
            dim=768,
            mean=HALF,
            std=HALF,
            magnification="5x-40x (mixed)",
            licence="see the model card",
            card=f"huggingface.co/1aurent/vit_base_patch8_224.{KAIKO}; {TRIDENT}",
            hf_repo=f"1aurent/vit_base_patch8_224.{KAIKO}",
            precision="fp32",
            trident_name="kaiko-vitb8",
        ),
        _vit(
            "kaiko_vitl14",
            "ViT-L/14 (DINOv2, 4 registers)",
            "vit_large_patch14_reg4_dinov2",
            {"img_size": 518},
            dim=1024,
            mean=HALF,
            std=HALF,
            magnification="5x-40x (mixed)",
            licence="see the model card",
            card=f"huggingface.co/1aurent/vit_large_patch14_reg4_dinov2.{KAIKO}; {TRIDENT}",
            hf_repo=f"1aurent/vit_large_patch14_reg4_dinov2.{KAIKO}",
            precision="fp32",
            trident_name="kaiko-vitl14",
        ),
        _vit(
            "lunit_vits8",
            "ViT-S/8 (DINO)",
            "vit_small_patch8_224",
            {"img_size": 224},
            dim=384,
            mean=LUNIT_MEAN,
            std=LUNIT_STD,
            magnification="20x and 40x",
            licence="Lunit non-commercial licence (model card)",
            card="huggingface.co/1aurent/vit_small_patch8_224.lunit_dino; "
            f"github.com/lunit-io/benchmark-ssl-pathology; {TRIDENT}",
            hf_repo="1aurent/vit_small_patch8_224.lunit_dino",
            precision="fp32",
            trident_name="lunit-vits8",
        ),
    )


SPECS: dict[str, EncoderSpec] = {spec.name: spec for spec in _specs()}


def spec_for(name: str) -> EncoderSpec:
    """The registry row of ``name``, or of the encoder TRIDENT calls ``name``.

    Raises
    ------
    ModelError
        When no row has that name.
    """
    for spec in SPECS.values():
        if name in (spec.name, spec.trident_name):
            return spec
    raise ModelError(f"Unknown encoder '{name}'; `her2viewer encoders list` shows the known ones.")


class PooledViT(nn.Module):
    """A timm ViT trunk and the pooling of its tokens into one vector."""

    def __init__(self, trunk: nn.Module, pooling: str) -> None:
        super().__init__()
        self.trunk = trunk
        self.pooling = pooling

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pooling != "cls+mean":
            return self.trunk(x)  # timm pools the CLS token or runs its attention head
        tokens = self.trunk.forward_features(x)
        patches = tokens[:, self.trunk.num_prefix_tokens :]
        return torch.cat([tokens[:, 0], patches.mean(1)], dim=-1)


def build_network(spec: EncoderSpec, small: bool = False) -> nn.Module:
    """Build the (untrained) network of a ViT row, or its small variant."""
    import timm

    kwargs = {**spec.kwargs, **(spec.small if small else {})}
    if kwargs.pop("swiglu", False):
        kwargs |= _swiglu()
    trunk = timm.create_model(spec.constructor, pretrained=False, **kwargs)
    return spec.head(trunk) if spec.head else PooledViT(trunk, spec.pooling)


def load_checked(module: nn.Module, path: Path, spec: EncoderSpec, convert=None) -> None:
    """Load a state dict into ``module`` after checking every key and shape.

    ``convert`` renames an official checkpoint's keys to the module's (``spec.convert``
    of a patch or slide encoder); without it, a transformers Dinov2 checkpoint is
    renamed to timm's keys. ``spec`` needs ``name`` and ``architecture``.

    Raises
    ------
    ModelError
        One sentence naming the file and the first key that does not fit.
    """
    state = _strip_prefixes(load_weights_file(path))
    if convert is not None:
        state = convert(state)
    elif "embeddings.cls_token" in state:
        state = dinov2_to_timm(state, getattr(module, "no_embed_class", False))
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    wrong = [k for k in expected if k in state and state[k].shape != expected[k].shape]
    if missing or extra or wrong:
        key = (missing or extra or wrong)[0]
        raise ModelError(
            f"{path.name} does not fit {spec.name} ({spec.architecture}): {len(missing)} "
            f"missing, {len(extra)} unexpected and {len(wrong)} mis-shaped tensors, e.g. '{key}'."
        )
    module.load_state_dict(state, strict=True)


#: transformers' Dinov2 layer names -> timm's (both the 4.x and the 5.x names). The SwiGLU
#: MLP (``use_swiglu_ffn``, Hibou's) is 4.x ``weights_in``/``weights_out``, whose halves
#: are SiLU(first) * second as in timm's ``SwiGLUPacked``, or 5.x ``gate_proj``, ``up_proj``
#: and ``down_proj``.
DINOV2_LAYER = {
    "norm1": "norm1",
    "norm2": "norm2",
    "mlp.fc1": "mlp.fc1",
    "mlp.fc2": "mlp.fc2",
    "mlp.weights_in": "mlp.fc1",
    "mlp.weights_out": "mlp.fc2",
    "mlp.down_proj": "mlp.fc2",
    "layer_scale1.lambda1": "ls1.gamma",
    "layer_scale2.lambda1": "ls2.gamma",
    "attention.output.dense": "attn.proj",
    "attention.o_proj": "attn.proj",
}
#: Layers that timm keeps stacked in one tensor: (transformers' names, timm's name).
DINOV2_STACKED = (
    (("attention.attention.query", "attention.attention.key", "attention.attention.value"),
     "attn.qkv"),
    (("attention.q_proj", "attention.k_proj", "attention.v_proj"), "attn.qkv"),
    (("mlp.gate_proj", "mlp.up_proj"), "mlp.fc1"),
)  # fmt: skip


def dinov2_to_timm(state: dict, no_embed_class: bool) -> dict:
    """Rename a transformers ``Dinov2Model`` / ``Dinov2WithRegistersModel`` state dict
    (Phikon-v2's, Hibou's format) to timm's ViT names.

    q, k and v are stacked into timm's ``qkv`` (and 5.x's SwiGLU gate and up projections
    into ``fc1``; transformers' ``mask_token``, unused at inference, is dropped). For a
    timm network whose position embeddings cover the patches only (``no_embed_class``,
    the register models), the CLS position is added to the CLS token, as transformers adds it there.
    """
    out = {
        "cls_token": state["embeddings.cls_token"],
        "pos_embed": state["embeddings.position_embeddings"],
        "patch_embed.proj.weight": state["embeddings.patch_embeddings.projection.weight"],
        "patch_embed.proj.bias": state["embeddings.patch_embeddings.projection.bias"],
        "norm.weight": state["layernorm.weight"],
        "norm.bias": state["layernorm.bias"],
    }
    if "embeddings.register_tokens" in state:
        out["reg_token"] = state["embeddings.register_tokens"]
    if no_embed_class:
        out["cls_token"] = out["cls_token"] + out["pos_embed"][:, :1]
        out["pos_embed"] = out["pos_embed"][:, 1:]
    layers = {int(k.split(".")[2]) for k in state if k.startswith("encoder.layer.")}
    for i in sorted(layers):
        old, new = f"encoder.layer.{i}.", f"blocks.{i}."
        for key, value in state.items():
            for name, timm_name in DINOV2_LAYER.items():
                if key == old + name or key.startswith(old + name + "."):
                    out[new + timm_name + key[len(old + name) :]] = value
        for names, timm_name in DINOV2_STACKED:
            for part in ("weight", "bias"):
                if f"{old}{names[0]}.{part}" in state:
                    stacked = [state[f"{old}{n}.{part}"] for n in names]
                    out[f"{new}{timm_name}.{part}"] = torch.cat(stacked)
    return out


def _strip_prefixes(state: dict) -> dict:
    """Drop the wrappers training code puts in front of every key."""
    for prefix in ("module.", "model.", "trunk."):
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items()}
    return state


def _check_checksum(path: Path, digest: str, spec: EncoderSpec) -> None:
    """Refuse a weights file whose SHA-256 differs from the hub's or from a pinned one.

    The hub's is the name of the file's blob when it comes from a Hugging Face cache
    (:func:`hub.hub_sha256`); a pinned one is the variable ``<env_var>_SHA256`` or, failing
    that, the registry's ``sha256``.

    Raises
    ------
    ModelError
        One sentence naming the file and both digests.
    """
    published = hub.hub_sha256(path)
    if published and digest != published:
        raise ModelError(
            f"{path} is corrupt or truncated: its SHA-256 {digest} differs from the hub's "
            f"{published} (the name of its blob in the Hugging Face cache); delete it and "
            "download again."
        )
    variable = spec.env_var + "_SHA256"
    pinned = os.environ.get(variable, "").strip().lower()
    source = variable if pinned else "the model card"
    pinned = pinned or spec.sha256
    if pinned and digest != pinned:
        raise ModelError(
            f"{path} is not the published {spec.name} weights: its SHA-256 is {digest}, "
            f"{source} gives {pinned}."
        )


def vit_encoder(
    spec: EncoderSpec,
    weights: str | Path | None = None,
    random_seed: int | None = None,
    small: bool = False,
    download: bool = False,
) -> Encoder:
    """Build a registered ViT encoder with local weights (or seeded random ones).

    Parameters
    ----------
    spec : EncoderSpec
    weights : path, optional
        A weights file or folder (an HF snapshot too); else the environment variable,
        the HF cache, or a download when ``download`` is set.
    random_seed : int, optional
        Seeded random weights instead (tests, demos, benchmarks).
    small : bool
        The reduced-depth CI variant (only with random weights).

    Raises
    ------
    ModelError
        No weights found (the sentence says where to put them and under which
        licence), weights that do not fit, or a checksum that differs.
    """
    if small and random_seed is None:
        raise ModelError(f"The small variant of {spec.name} exists only with --random-weights.")
    if random_seed is not None:
        module = _seeded(lambda: build_network(spec, small), random_seed)
        provenance = {"weights": "random", "seed": int(random_seed)}
        provenance |= {"variant": "small"} if small else {}
    else:  # the file is found and checked before a billion parameters are built
        path = hub.resolve_weights(spec, weights, download)
        digest = file_sha256(path)
        _check_checksum(path, digest, spec)
        module = build_network(spec)
        load_checked(module if spec.head else module.trunk, path, spec, spec.convert)
        provenance = {"weights": path.name, "sha256": digest}
    return Encoder(
        name=spec.name,
        module=module.eval(),
        dim=spec.dim,
        input_size=spec.input_size,
        mean=spec.mean,
        std=spec.std,
        provenance=provenance,
        resize_to=spec.resize_to,
        interpolation=spec.interpolation,
        pooling=spec.pooling,
        magnification=spec.magnification,
    )


def _factory(spec: EncoderSpec):
    def factory(weights=None, random_seed=None, small=False, download=False) -> Encoder:
        return vit_encoder(spec, weights, random_seed, small, download)

    factory.__doc__ = f"Build {spec.name} ({spec.architecture}); see :func:`vit_encoder`."
    return factory


for _spec in SPECS.values():
    if _spec.constructor:
        register_encoder(_spec.name, _factory(_spec))
