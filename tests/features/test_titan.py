"""TITAN's slide encoder: the official checkpoint's names and shapes, grid placement, the 2-D
ALiBi bias worked out by hand, and strict loading of official-style weights."""

from __future__ import annotations

import math

import pytest
import torch
from safetensors.torch import save_file
from torch.nn import functional as F

from her2viewer.errors import ModelError
from her2viewer.features import titan
from her2viewer.features.slide_encoders import load_slide_encoder

BLOCK = {
    "norm1.weight": (768,),
    "norm1.bias": (768,),
    "attn.qkv.weight": (2304, 768),
    "attn.qkv.bias": (2304,),
    "attn.proj.weight": (768, 768),
    "attn.proj.bias": (768,),
    "norm2.weight": (768,),
    "norm2.bias": (768,),
    "mlp.fc1.weight": (3072, 768),
    "mlp.fc1.bias": (3072,),
    "mlp.fc2.weight": (768, 3072),
    "mlp.fc2.bias": (768,),
}


def pooler(name: str, queries: int) -> dict:
    return {
        f"{name}.query": (queries, 768),
        f"{name}.attn.in_proj_weight": (2304, 768),
        f"{name}.attn.in_proj_bias": (2304,),
        f"{name}.attn.out_proj.weight": (768, 768),
        f"{name}.attn.out_proj.bias": (768,),
        **{f"{name}.{ln}.{p}": (768,) for ln in ("ln_q", "ln_k") for p in ("weight", "bias")},
    }


def official_vision_keys(depth: int = 6) -> dict:
    """The vision tower's tensors in MahmoodLab/TITAN (vision_transformer.py with
    configuration_titan.py's TitanVisionConfig and TitanConfig's parallel attention pools)."""
    keys = {
        "cls_token": (1, 1, 768),
        "patch_embed.0.weight": (768, 768),
        "patch_embed.0.bias": (768,),
        "norm.weight": (768,),
        "norm.bias": (768,),
        "proj": (768, 768),
        **pooler("attn_pool", 128),
        **pooler("attn_pool_contrastive", 1),
    }
    for i in range(depth):
        keys |= {f"blocks.modules_list.{i}.{k}": shape for k, shape in BLOCK.items()}
    return keys


def tiles(n: int = 40, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """n CONCH-sized features on distinct cells of a 512 px level-0 grid."""
    gen = torch.Generator().manual_seed(seed)
    cells = torch.randperm(100, generator=gen)[:n]
    coords = torch.stack([cells % 10, cells // 10], 1) * 512 + 1000
    return torch.randn(n, 768, generator=gen), coords.long()


def test_full_titan_has_the_official_names_and_shapes_and_embeds_768():
    model, provenance = load_slide_encoder("titan", random_seed=0)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert shapes == official_vision_keys()
    assert provenance == {"encoder": "titan", "variant": "full", "weights": "random", "seed": 0}
    embedding = model(*tiles(), 512)
    assert embedding.shape == (768,) and torch.isfinite(embedding).all()


def test_embedding_does_not_depend_on_the_order_of_the_rows():
    model, _ = load_slide_encoder("titan", small=True, random_seed=1)
    features, coords = tiles()
    order = torch.randperm(len(features), generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        a = model(features, coords, 512)
        b = model(features[order], coords[order], 512)
    torch.testing.assert_close(a, b)


def test_place_on_grid_orders_cells_sums_shared_cells_and_drops_background():
    features = torch.tensor([[1.0, 0.0], [0.0, 0.0], [2.0, 5.0], [3.0, 1.0], [4.0, 4.0]])
    # (x, y) level-0 corners of 256 px tiles: cells (1,0) (0,1) (0,0) (1,1) and (1,1) again
    coords = torch.tensor([[356, 100], [100, 356], [100, 100], [356, 356], [400, 400]])
    got, cells = titan.place_on_grid(features, coords, 256)
    assert cells.tolist() == [[0, 0], [1, 0], [1, 1]]  # row-major in (x, y); (0, 1) is all zero
    assert got.tolist() == [[2.0, 5.0], [1.0, 0.0], [7.0, 5.0]]


def test_alibi_slopes_of_twelve_heads():
    eight = [2.0**-k for k in range(1, 9)]
    odd = [2 ** (-k / 2) for k in (1, 3, 5, 7)]
    assert titan.alibi_slopes(12) == pytest.approx(eight + odd)


def test_alibi_bias_of_a_2x2_grid_by_hand():
    cells = torch.tensor([[0, 0], [0, 1], [1, 0], [1, 1]])
    bias = titan.alibi_bias(cells, 12)
    r = math.sqrt(2)
    distance = torch.tensor([[0, 1, 1, r], [1, 0, r, 1], [1, r, 0, 1], [r, 1, 1, 0]])
    assert bias.shape == (1, 12, 5, 5)
    assert bias[0, :, 0].abs().sum() == 0 and bias[0, :, :, 0].abs().sum() == 0  # CLS
    torch.testing.assert_close(bias[0, 0, 1:, 1:], -0.5 * distance)
    torch.testing.assert_close(bias[0, 8, 1:, 1:], -(2**-0.5) * distance)


def test_one_block_on_a_2x2_grid_matches_attention_computed_by_hand():
    """Softmax(q k^T / sqrt(d) - slope * distance) v, with the bias written out by hand."""
    model, _ = load_slide_encoder("titan", small=True, random_seed=2)
    features = torch.randn(4, 768, generator=torch.Generator().manual_seed(0))
    coords = torch.tensor([[0, 0], [0, 512], [512, 0], [512, 512]])
    r = math.sqrt(2)
    distance = torch.tensor([[0, 1, 1, r], [1, 0, r, 1], [1, r, 0, 1], [r, 1, 1, 0]])
    slopes = torch.tensor(titan.alibi_slopes(12)).view(12, 1, 1)
    bias = torch.zeros(12, 5, 5)
    bias[:, 1:, 1:] = -slopes * distance
    with torch.inference_mode():
        block = model.blocks.modules_list[0]
        x = torch.cat([model.cls_token[0], model.patch_embed(features)])
        q, k, v = block.attn.qkv(block.norm1(x)).view(5, 3, 12, 64).permute(1, 2, 0, 3)
        weights = torch.softmax(q @ k.transpose(1, 2) / 8 + bias, dim=-1)
        x = x + block.attn.proj((weights @ v).transpose(0, 1).reshape(5, 768))
        x = model.norm(x + block.mlp(block.norm2(x)))
        pool = model.attn_pool_contrastive
        expected, _ = F.multi_head_attention_forward(
            pool.ln_q(pool.query).unsqueeze(1), *[pool.ln_k(x).unsqueeze(1)] * 2, 768, 8,
            pool.attn.in_proj_weight, pool.attn.in_proj_bias, None, None, False, 0.0,
            pool.attn.out_proj.weight, pool.attn.out_proj.bias, need_weights=False,
        )  # fmt: skip
        torch.testing.assert_close(model(features, coords, 512), expected[0, 0])


@pytest.fixture()
def one_block(monkeypatch):
    """TITAN with one block, so that a full-size checkpoint file stays small in tests."""
    monkeypatch.setattr(titan, "DEPTH", 1)


def official_checkpoint(path, seed: int = 0) -> dict:
    """A state dict laid out like MahmoodLab/TITAN's model.safetensors (one block)."""
    gen = torch.Generator().manual_seed(seed)
    state = {
        f"vision_encoder.{k}": torch.randn(shape, generator=gen)
        for k, shape in official_vision_keys(1).items()
    }
    state["text_encoder.token_embedding.weight"] = torch.randn(10, 768, generator=gen)
    save_file(state, str(path))
    return state


def test_an_official_checkpoint_loads_strictly_without_its_text_tower(tmp_path, one_block):
    state = official_checkpoint(tmp_path / "model.safetensors")
    model, provenance = load_slide_encoder("titan", weights=tmp_path)
    assert provenance["weights"] == "model.safetensors" and len(provenance["sha256"]) == 64
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, state[f"vision_encoder.{key}"])


@pytest.mark.parametrize(
    "change, fragment",
    [
        (lambda s: s.pop("vision_encoder.norm.bias"), "1 missing"),
        (lambda s: s.update({"vision_encoder.head.weight": torch.zeros(2)}), "1 unexp"),
        (lambda s: s.update({"vision_encoder.proj": torch.zeros(768, 512)}), "1 mis-shaped"),
    ],
)
def test_a_checkpoint_that_does_not_fit_is_refused_in_one_sentence(
    tmp_path, one_block, change, fragment
):
    state = official_checkpoint(tmp_path / "x.safetensors")
    change(state)
    save_file(state, str(tmp_path / "model.safetensors"))
    with pytest.raises(ModelError) as info:
        load_slide_encoder("titan", weights=tmp_path / "model.safetensors")
    message = str(info.value)
    assert "model.safetensors does not fit titan" in message and fragment in message
    assert "\n" not in message
