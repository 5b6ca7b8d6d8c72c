"""Official checkpoints load as published: CONCH v1.5's ``pytorch_model_vision.bin`` and the
transformers-format files of Hibou-L and Phikon-v2, with the key names and shapes of the
reference code (random values, small depth), and the same features as that code's forward."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from safetensors.torch import save_file
from torch.nn import functional as F

from her2viewer.errors import ModelError
from her2viewer.features.registry import SPECS, vit_encoder

WIDTH, POOL, HEADS, POOL_HEADS = 1024, 768, 16, 8


def conch_official_shapes(depth: int, grid: int = 14) -> dict[str, tuple[int, ...]]:
    """Every tensor of ``CONCHVisionTower`` and its shape, read from the reference code:
    github.com/mahmoodlab/TRIDENT trident/patch_encoder_models/model_zoo/conchv1_5/conchv1_5.py
    at a91fa84 (``vit_large(init_values=1.0)``: patch 16, width 1024, 16 heads, MLP x4, qkv
    bias, layer scale; ``AttentionalPooler(d_model=768, context_dim=1024, n_head=8,
    n_queries=1)``, bias-free projections; ``ln_contrast = LayerNorm(768)``)."""
    shapes = {
        "trunk.cls_token": (1, 1, WIDTH),
        "trunk.pos_embed": (1, grid * grid + 1, WIDTH),
        "trunk.patch_embed.proj.weight": (WIDTH, 3, 16, 16),
        "trunk.patch_embed.proj.bias": (WIDTH,),
        "trunk.norm.weight": (WIDTH,),
        "trunk.norm.bias": (WIDTH,),
        "attn_pool_contrast.query": (1, POOL),
        "attn_pool_contrast.ln_k.weight": (WIDTH,),
        "attn_pool_contrast.ln_k.bias": (WIDTH,),
        "attn_pool_contrast.ln_q.weight": (POOL,),
        "attn_pool_contrast.ln_q.bias": (POOL,),
        "attn_pool_contrast.to_q.weight": (POOL, POOL),
        "attn_pool_contrast.to_kv.weight": (2 * POOL, WIDTH),
        "attn_pool_contrast.to_out.weight": (POOL, POOL),
        "ln_contrast.weight": (POOL,),
        "ln_contrast.bias": (POOL,),
    }
    for i in range(depth):
        block = {
            "norm1.weight": (WIDTH,), "norm1.bias": (WIDTH,),
            "attn.qkv.weight": (3 * WIDTH, WIDTH), "attn.qkv.bias": (3 * WIDTH,),
            "attn.proj.weight": (WIDTH, WIDTH), "attn.proj.bias": (WIDTH,),
            "ls1.gamma": (WIDTH,),
            "norm2.weight": (WIDTH,), "norm2.bias": (WIDTH,),
            "mlp.fc1.weight": (4 * WIDTH, WIDTH), "mlp.fc1.bias": (4 * WIDTH,),
            "mlp.fc2.weight": (WIDTH, 4 * WIDTH), "mlp.fc2.bias": (WIDTH,),
            "ls2.gamma": (WIDTH,),
        }  # fmt: skip
        shapes |= {f"trunk.blocks.{i}.{name}": shape for name, shape in block.items()}
    return shapes


def random_state(shapes: dict, seed: int) -> dict[str, torch.Tensor]:
    """Random tensors of those shapes, scaled so every layer matters (norms near 1)."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in shapes.items():
        value = torch.randn(shape, generator=generator)
        if key.endswith((".weight", ".gamma")) and len(shape) == 1:
            value = 1 + 0.2 * value
        elif len(shape) >= 2 and "embed" not in key and "token" not in key and "query" not in key:
            value = value / math.sqrt(shape[1] * (shape[2] * shape[3] if len(shape) == 4 else 1))
        else:
            value = 0.2 * value
        state[key] = value
    return state


def layer_norm(x, state, prefix, eps):
    return F.layer_norm(x, x.shape[-1:], state[f"{prefix}.weight"], state[f"{prefix}.bias"], eps)


def conch_reference_forward(state: dict, x: torch.Tensor) -> torch.Tensor:
    """``CONCHVisionTower.forward`` of the reference, written out on the raw tensors:
    ``trunk.forward_features`` (its ``interpolate_pos_encoding``: bicubic, scale factor
    (side/16 + 0.1)/14), then the attentional pooler's query over all tokens (scaled
    dot product, max subtracted, softmax), ``[:, 0]``, ``ln_contrast``."""
    s = state
    t = F.conv2d(x, s["trunk.patch_embed.proj.weight"], s["trunk.patch_embed.proj.bias"], 16)
    t = t.flatten(2).transpose(1, 2)
    t = torch.cat([s["trunk.cls_token"].expand(len(x), -1, -1), t], dim=1)
    pos, n = s["trunk.pos_embed"], s["trunk.pos_embed"].shape[1] - 1
    if t.shape[1] - 1 != n:  # square images only here, so the reference's w == h holds
        w0 = h0 = x.shape[-1] // 16 + 0.1
        side = math.sqrt(n)
        grid = pos[:, 1:].reshape(1, int(side), int(side), WIDTH).permute(0, 3, 1, 2)
        grid = F.interpolate(grid, scale_factor=(w0 / side, h0 / side), mode="bicubic")
        pos = torch.cat([pos[:, :1], grid.permute(0, 2, 3, 1).reshape(1, -1, WIDTH)], dim=1)
    t = t + pos
    blocks = sorted({int(k.split(".")[2]) for k in s if k.startswith("trunk.blocks.")})
    for i in blocks:
        b = f"trunk.blocks.{i}"
        h = layer_norm(t, s, f"{b}.norm1", 1e-6)
        qkv = F.linear(h, s[f"{b}.attn.qkv.weight"], s[f"{b}.attn.qkv.bias"])
        q, k, v = qkv.reshape(len(x), -1, 3, HEADS, WIDTH // HEADS).permute(2, 0, 3, 1, 4)
        attn = ((q * (WIDTH // HEADS) ** -0.5) @ k.transpose(-2, -1)).softmax(-1)
        h = (attn @ v).transpose(1, 2).reshape(len(x), -1, WIDTH)
        h = F.linear(h, s[f"{b}.attn.proj.weight"], s[f"{b}.attn.proj.bias"])
        t = t + s[f"{b}.ls1.gamma"] * h
        h = layer_norm(t, s, f"{b}.norm2", 1e-6)
        h = F.linear(F.gelu(F.linear(h, s[f"{b}.mlp.fc1.weight"], s[f"{b}.mlp.fc1.bias"])),
                     s[f"{b}.mlp.fc2.weight"], s[f"{b}.mlp.fc2.bias"])  # fmt: skip
        t = t + s[f"{b}.ls2.gamma"] * h
    t = layer_norm(t, s, "trunk.norm", 1e-6)
    p = "attn_pool_contrast"
    tokens = layer_norm(t, s, f"{p}.ln_k", 1e-5)
    query = F.linear(layer_norm(s[f"{p}.query"], s, f"{p}.ln_q", 1e-5), s[f"{p}.to_q.weight"])
    k, v = F.linear(tokens, s[f"{p}.to_kv.weight"]).chunk(2, dim=-1)
    head = POOL // POOL_HEADS
    q = query.reshape(1, POOL_HEADS, head).transpose(0, 1) * head**-0.5  # (heads, 1, d)
    k = k.reshape(len(x), -1, POOL_HEADS, head).transpose(1, 2)  # (B, heads, N, d)
    v = v.reshape(len(x), -1, POOL_HEADS, head).transpose(1, 2)
    sim = torch.einsum("hid,bhjd->bhij", q, k)
    attn = (sim - sim.amax(-1, keepdim=True)).softmax(-1)
    out = torch.einsum("bhij,bhjd->bhid", attn, v).transpose(1, 2).reshape(len(x), 1, POOL)
    pooled = F.linear(out, s[f"{p}.to_out.weight"])[:, 0]
    return layer_norm(pooled, s, "ln_contrast", 1e-5)


@pytest.fixture()
def conch_depth1(monkeypatch):
    """The CONCH v1.5 row with one block as its real network (its weights fit in a test)."""
    spec = dataclasses.replace(
        SPECS["conch_v1_5"], kwargs={**SPECS["conch_v1_5"].kwargs, "depth": 1}
    )
    monkeypatch.setitem(SPECS, "conch_v1_5", spec)
    monkeypatch.delenv(spec.env_var, raising=False)
    monkeypatch.delenv(spec.env_var + "_SHA256", raising=False)
    return spec


@pytest.mark.parametrize("grid", [14, 28])
def test_conch_v1_5_official_checkpoint_loads_and_matches_the_reference(
    conch_depth1, tmp_path, grid
):
    """Every official key loads strictly (a 28 x 28 position grid too, resampled to 14 x 14
    as the reference does on loading) and the 768-d feature is the reference forward's."""
    state = random_state(conch_official_shapes(depth=1, grid=grid), seed=grid)
    torch.save(state, tmp_path / "pytorch_model_vision.bin")
    encoder = vit_encoder(conch_depth1, weights=tmp_path)
    assert encoder.dim == 768 and encoder.input_size == 448 and encoder.pooling == "attention"
    assert not SPECS["conch_v1_5"].note  # the "does not load" note is gone
    if grid != 14:
        # What the reference's resize_pos_embed calls on loading.
        from timm.layers import resample_abs_pos_embed

        state["trunk.pos_embed"] = resample_abs_pos_embed(
            state["trunk.pos_embed"], new_size=[14, 14], num_prefix_tokens=1,
            interpolation="bilinear", antialias=False,
        )  # fmt: skip
    x = torch.randn(2, 3, 448, 448, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        features = encoder.module(x)
        expected = conch_reference_forward(state, x)
    assert features.shape == (2, 768)
    torch.testing.assert_close(features, expected, rtol=1e-4, atol=1e-4)
    with torch.inference_mode():  # at 224 px the positions are used as they are
        small = torch.randn(1, 3, 224, 224)
        torch.testing.assert_close(
            encoder.module(small), conch_reference_forward(state, small), rtol=1e-4, atol=1e-4
        )


def test_conch_v1_5_checkpoint_missing_a_tensor_is_refused(conch_depth1, tmp_path):
    state = random_state(conch_official_shapes(depth=1), seed=0)
    del state["ln_contrast.bias"]
    torch.save(state, tmp_path / "pytorch_model_vision.bin")
    with pytest.raises(ModelError, match=r"fit conch_v1_5 .*1 missing.*'ln_contrast.bias'"):
        vit_encoder(conch_depth1, weights=tmp_path)


def dinov2_official_keys(depth: int, registers: bool, swiglu: bool) -> set[str]:
    """The tensor names of a transformers 4.x ``Dinov2Model`` file (Phikon-v2's
    ``model.safetensors``; Hibou-L's remote code is that model with ``register_tokens`` and
    ``use_swiglu_ffn``), as transformers 5's own conversion table for Dinov2 lists them
    (``transformers/conversion_mapping.py``: attention.attention.query/key/value,
    attention.output.dense, mlp.weights_in/weights_out)."""
    keys = {
        "embeddings.cls_token", "embeddings.mask_token", "embeddings.position_embeddings",
        "embeddings.patch_embeddings.projection.weight",
        "embeddings.patch_embeddings.projection.bias", "layernorm.weight", "layernorm.bias",
    } | ({"embeddings.register_tokens"} if registers else set())  # fmt: skip
    mlp = ("weights_in", "weights_out") if swiglu else ("fc1", "fc2")
    attention = ("attention.attention.query", "attention.attention.key",
                 "attention.attention.value", "attention.output.dense")  # fmt: skip
    layers = ("norm1", "norm2", *attention, *(f"mlp.{m}" for m in mlp))
    for i in range(depth):
        keys |= {f"encoder.layer.{i}.{n}.{p}" for n in layers for p in ("weight", "bias")}
        keys |= {f"encoder.layer.{i}.layer_scale{j}.lambda1" for j in (1, 2)}
    return keys


def as_transformers4(state: dict) -> dict:
    """A transformers 5 Dinov2 state dict under its 4.x (published files') names: the
    inverse of transformers 5's conversion table (``weights_in`` = gate then up)."""
    renames = {
        "attention.q_proj": "attention.attention.query",
        "attention.k_proj": "attention.attention.key",
        "attention.v_proj": "attention.attention.value",
        "attention.o_proj": "attention.output.dense",
        "mlp.down_proj": "mlp.weights_out",
    }
    out = {}
    for key, value in state.items():
        for new, old in renames.items():
            key = key.replace(f".{new}.", f".{old}.")
        if ".mlp.up_proj." in key:
            continue
        if ".mlp.gate_proj." in key:
            up = state[key.replace("gate_proj", "up_proj")]
            key, value = key.replace("gate_proj", "weights_in"), torch.cat([value, up])
        out[key] = value.contiguous()
    return out


@pytest.mark.parametrize("name", ["hibou_l", "phikon_v2"])
def test_transformers4_checkpoints_of_hibou_and_phikon_load(name, tmp_path):
    """Hibou-L (registers, SwiGLU) and Phikon-v2 files under their real names load strictly
    and give transformers' pooler output (the normed CLS token, TRIDENT's feature)."""
    transformers = pytest.importorskip("transformers")
    hibou = name == "hibou_l"
    kind = "Dinov2WithRegisters" if hibou else "Dinov2"
    extra = {"num_register_tokens": 4, "use_swiglu_ffn": True} if hibou else {}
    config = getattr(transformers, f"{kind}Config")(
        hidden_size=64, num_hidden_layers=2, num_attention_heads=4, mlp_ratio=4,
        image_size=224, patch_size=14 if hibou else 16, layerscale_value=0.5, **extra,
    )  # fmt: skip
    torch.manual_seed(0)
    reference = getattr(transformers, f"{kind}Model")(config).eval()
    for param in reference.parameters():
        param.data.normal_(0, 0.2)
    state = as_transformers4(reference.state_dict())
    assert set(state) == dinov2_official_keys(2, registers=hibou, swiglu=hibou)
    save_file(state, tmp_path / "model.safetensors")
    # The SwiGLU hidden width of a 64-wide test network is 176 (x2 packed), not 1024's 2736.
    small = {"depth": 2, "embed_dim": 64, "num_heads": 4} | ({"mlp_ratio": 5.5} if hibou else {})
    spec = dataclasses.replace(SPECS[name], kwargs={**SPECS[name].kwargs, **small})
    encoder = vit_encoder(spec, weights=tmp_path / "model.safetensors")
    x = torch.randn(2, 3, 224, 224)
    with torch.inference_mode():
        expected = reference(pixel_values=x).pooler_output
        torch.testing.assert_close(encoder.module(x), expected, rtol=1e-5, atol=1e-5)


def test_hibou_l_full_network_has_hibous_swiglu_width():
    """ViT-L with HistAI's SwiGLU (build_model's ``ffn_layer="swiglufused"``): 2736 per half."""
    from her2viewer.features.registry import build_network

    with torch.device("meta"):
        mlp = build_network(SPECS["hibou_l"]).trunk.blocks[0].mlp
    assert (mlp.fc1.out_features, mlp.fc2.in_features) == (2 * 2736, 2736)
