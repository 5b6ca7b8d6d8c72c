"""CONCH v1.5's vision tower, laid out so that its official checkpoint loads as published.

The reference is ``CONCHVisionTower`` in github.com/mahmoodlab/TRIDENT
``trident/patch_encoder_models/model_zoo/conchv1_5/conchv1_5.py`` at commit a91fa84
(with ``create_model_from_pretrained`` in the same file and ``Conchv15InferenceEncoder``
in ``trident/patch_encoder_models/load.py``). The checkpoint, ``pytorch_model_vision.bin``
of huggingface.co/MahmoodLab/conchv1_5, holds three parts:

- ``trunk.*``: a ViT-L/16 built for 224 px (1 + 14 x 14 positions), layer scale, qkv
  bias, LayerNorm eps 1e-6; the same tensor names as timm's ``vit_large_patch16_224``;
- ``attn_pool_contrast.*``: an attentional pooler, one learnt 768-d query attending over
  all 1024-d output tokens (CLS included) with 8 heads (``query``, ``ln_q``, ``ln_k``,
  ``to_q``, ``to_kv``, ``to_out``, no biases);
- ``ln_contrast.*``: a LayerNorm of the pooled 768-d vector, which is the feature.

The trunk runs at 448 px: as in the reference, its 14 x 14 position grid is stretched
bicubically by a scale factor of (28 + 0.1) / 14 (DINO's offset), not to a size.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

#: The checkpoint's grid of patch positions (the reference builds its trunk for 224 px).
GRID = 14
PATCH = 16


class AttentionalPooler(nn.Module):
    """Learnt queries attending over a token sequence (the reference's ``AttentionalPooler``).

    Parameters
    ----------
    dim : int
        Width of the queries and of the output.
    context_dim : int
        Width of the tokens attended over.
    heads, queries : int
        Attention heads and number of learnt queries.
    """

    def __init__(self, dim: int = 768, context_dim: int = 1024, heads: int = 8, queries: int = 1):
        super().__init__()
        self.heads = heads
        self.query = nn.Parameter(torch.randn(queries, dim))
        self.ln_q = nn.LayerNorm(dim)
        self.ln_k = nn.LayerNorm(context_dim)
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_kv = nn.Linear(context_dim, 2 * dim, bias=False)
        self.to_out = nn.Linear(dim, dim, bias=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Pool (B, N, context_dim) tokens into (B, queries, dim)."""
        q = self.to_q(self.ln_q(self.query)).expand(tokens.shape[0], -1, -1)
        k, v = self.to_kv(self.ln_k(tokens)).chunk(2, dim=-1)
        q, k, v = (t.unflatten(-1, (self.heads, -1)).transpose(1, 2) for t in (q, k, v))
        pooled = F.scaled_dot_product_attention(q, k, v)
        return self.to_out(pooled.transpose(1, 2).flatten(2))


class ConchVisionTower(nn.Module):
    """CONCH v1.5's image encoder: a timm ViT-L/16 trunk, attention pool, LayerNorm -> 768.

    Parameters
    ----------
    trunk : nn.Module
        A timm ``VisionTransformer`` built for 224 px (``dynamic_img_size``), whose
        tensor names are the checkpoint's ``trunk.*`` names.
    """

    def __init__(self, trunk: nn.Module) -> None:
        super().__init__()
        self.trunk = trunk
        self.attn_pool_contrast = AttentionalPooler(context_dim=trunk.embed_dim)
        self.ln_contrast = nn.LayerNorm(768)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Features (B, 768) of normalised images (B, 3, S, S)."""
        trunk = self.trunk
        patches = trunk.patch_embed(x)
        patches = patches.flatten(1, 2) if patches.ndim == 4 else patches
        tokens = torch.cat([trunk.cls_token.expand(len(x), -1, -1), patches], dim=1)
        tokens = tokens + stretched_positions(trunk.pos_embed, x.shape[-2], x.shape[-1])
        tokens = trunk.norm(trunk.blocks(trunk.norm_pre(tokens)))
        return self.ln_contrast(self.attn_pool_contrast(tokens)[:, 0])


def stretched_positions(pos_embed: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """The position embeddings of a ``height`` x ``width`` image, as the reference makes them.

    The CLS position is kept; the square grid of patch positions is resized bicubically
    by the scale factor (side // 16 + 0.1) / grid (unchanged for a square image of the
    grid's own size).
    """
    grid = math.isqrt(pos_embed.shape[1] - 1)
    rows, cols = height // PATCH, width // PATCH
    if rows * cols == grid * grid and height == width:
        return pos_embed
    patch_pos = pos_embed[:, 1:].reshape(1, grid, grid, -1).permute(0, 3, 1, 2)
    scale = ((rows + 0.1) / grid, (cols + 0.1) / grid)
    patch_pos = F.interpolate(patch_pos, scale_factor=scale, mode="bicubic")
    return torch.cat([pos_embed[:, :1], patch_pos.permute(0, 2, 3, 1).flatten(1, 2)], dim=1)


def from_official(state: dict) -> dict:
    """The official state dict, its position grid resampled to 14 x 14 when it has another.

    The reference does the same on loading (``resize_pos_embed``: timm's
    ``resample_abs_pos_embed``, bilinear, no antialiasing, the CLS position kept).
    """
    pos = state.get("trunk.pos_embed")
    if pos is None or pos.ndim != 3 or pos.shape[1] == GRID * GRID + 1:
        return state
    from timm.layers import resample_abs_pos_embed

    resampled = resample_abs_pos_embed(
        pos, new_size=[GRID, GRID], num_prefix_tokens=1, interpolation="bilinear",
        antialias=False, verbose=False,
    )  # fmt: skip
    return {**state, "trunk.pos_embed": resampled}
