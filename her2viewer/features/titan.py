"""TITAN's slide encoder (vision part only): CONCH v1.5 tile features -> a 768-d slide embedding.

Ding et al. 2024, "Multimodal whole slide foundation model for pathology"
(github.com/mahmoodlab/TITAN). The reference is the Hugging Face remote code of
``MahmoodLab/TITAN``: ``vision_transformer.py`` (``preprocess_features``,
``VisionTransformer.forward_features`` / ``get_alibi`` / ``AttentionalPooler``),
``configuration_titan.py`` (``TitanVisionConfig``: width 768, depth 6, 12 heads, MLP
ratio 4, qkv bias, ALiBi, and ``TitanConfig``'s "parallel" CoCa attention pools of
128 and 1 queries with 8 heads) and ``modeling_titan.py``
(``encode_slide_from_patch_features`` calls the vision tower with ``no_proj=True``);
TRIDENT runs it the same way (github.com/mahmoodlab/TRIDENT at a91fa84,
``trident/slide_encoder_models/load.py``, ``TitanSlideEncoder``, with the coords'
``patch_size_level0``). Our module has the vision tower's parameter names and shapes,
so the official checkpoint's ``vision_encoder.*`` tensors load strictly.

What the reference does at inference (one slide), and this module too:

1. grid: a tile's cell is ``(coords - coords.min(0)) // patch_size_level0``; tiles in
   one cell are summed; cells whose features are all zero are background and dropped;
   the remaining cells are tokens in row-major order of (x cell, y cell);
2. tokens: Linear + GELU, a CLS token in front, no position embedding;
3. six pre-norm blocks whose attention logits get the 2-D ALiBi bias
   ``-slope_h * euclidean_distance(cell_i, cell_j)`` between tiles (0 to and from the
   CLS token), with the ALiBi slopes of 12 heads; a final LayerNorm;
4. the slide embedding is the contrastive attention pool (one learnt query, 8 heads)
   over all tokens, before the projection ``proj`` (which maps it into the text space).

The 128-query attention pool feeds the report decoder only: it is kept for the
checkpoint's keys but not run.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from her2viewer.features.registry import CC_BY_NC_ND
from her2viewer.features.slide_encoders import SlideEncoderSpec

WIDTH = 768
DEPTH = 6
HEADS = 12
MLP_RATIO = 4
POOL_HEADS = 8
POOL_QUERIES = 128
#: The CI variant: one block instead of six, same widths.
SMALL_DEPTH = 1
CHECKPOINT_PREFIX = "vision_encoder."


def alibi_slopes(n_heads: int) -> list[float]:
    """ALiBi's per-head slopes (Press et al. 2022), as TITAN's ``get_alibi`` computes them.

    For a power of two ``n``: ``2^(-8/n), 2^(-16/n), ...``; otherwise those of the
    nearest lower power of two, then every other slope of the next power of two.
    """
    if math.log2(n_heads).is_integer():
        first = 2 ** (-(2 ** -(math.log2(n_heads) - 3)))
        return [first ** (i + 1) for i in range(n_heads)]
    lower = 2 ** math.floor(math.log2(n_heads))
    return alibi_slopes(lower) + alibi_slopes(2 * lower)[0::2][: n_heads - lower]


def alibi_bias(cells: torch.Tensor, n_heads: int) -> torch.Tensor:
    """The attention bias of tiles at grid ``cells`` [n, 2] after a CLS token.

    Returns
    -------
    torch.Tensor
        [1, n_heads, n + 1, n + 1]: ``-slope_h * |cell_i - cell_j|`` (Euclidean) between
        tiles, 0 in the CLS token's row and column.
    """
    points = cells.float()
    distances = torch.cdist(points, points, compute_mode="donot_use_mm_for_euclid_dist")
    slopes = torch.tensor(alibi_slopes(n_heads), device=cells.device).view(n_heads, 1, 1)
    n = len(cells)
    bias = torch.zeros(1, n_heads, n + 1, n + 1, device=cells.device)
    bias[0, :, 1:, 1:] = -slopes * distances
    return bias


def place_on_grid(
    features: torch.Tensor, coords: torch.Tensor, patch_size_level0: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """TITAN's grid: the foreground cells' features and (x, y) cells, in row-major order.

    Parameters
    ----------
    features : torch.Tensor
        [N, C] tile features.
    coords : torch.Tensor
        [N, 2] level-0 (x, y) top-left corners, any order.
    patch_size_level0 : int
        A tile's side in level-0 px.

    Returns
    -------
    tuple of torch.Tensor
        [n, C] features (tiles in one cell summed) and [n, 2] int64 cells, sorted by
        (x cell, y cell); cells whose features are all zero (background) are left out.
    """
    cells = torch.div(coords - coords.min(0).values, int(patch_size_level0), rounding_mode="floor")
    height = int(cells[:, 1].max()) + 1
    index = cells[:, 0] * height + cells[:, 1]
    unique, inverse = torch.unique(index, sorted=True, return_inverse=True)
    summed = features.new_zeros(len(unique), features.shape[1]).index_add_(0, inverse, features)
    foreground = summed.ne(0).any(dim=1)
    unique = unique[foreground]
    return summed[foreground], torch.stack([unique // height, unique % height], dim=1)


class Attention(nn.Module):
    """Multi-head self-attention with an additive bias on the logits."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        x = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype))
        return self.proj(x.transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    """timm's two-layer MLP with GELU (``fc1``, ``fc2``)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    """A pre-norm transformer block (LayerNorm eps 1e-6, no layer scale)."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, dim * MLP_RATIO)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), bias)
        return x + self.mlp(self.norm2(x))


class Blocks(nn.Module):
    """The block stack (TITAN's ``CustomSequential``: ``modules_list.<i>``)."""

    def __init__(self, dim: int, heads: int, depth: int) -> None:
        super().__init__()
        self.modules_list = nn.ModuleList(Block(dim, heads) for _ in range(depth))

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        for block in self.modules_list:
            x = block(x, bias)
        return x


class AttentionalPooler(nn.Module):
    """CoCa's attention pool: learnt queries attend over the normalised tokens."""

    def __init__(self, dim: int, heads: int, queries: int) -> None:
        super().__init__()
        self.query = nn.Parameter(torch.randn(queries, dim))
        self.attn = nn.MultiheadAttention(dim, heads, kdim=dim, vdim=dim)
        self.ln_q = nn.LayerNorm(dim)
        self.ln_k = nn.LayerNorm(dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """[n, dim] tokens of one slide -> [queries, dim]."""
        keys = self.ln_k(tokens).unsqueeze(1)  # (length, batch 1, dim)
        out, _ = self.attn(self.ln_q(self.query).unsqueeze(1), keys, keys, need_weights=False)
        return out.squeeze(1)


class TitanSlideEncoder(nn.Module):
    """TITAN's vision tower (parameter names of the official checkpoint's ``vision_encoder``)."""

    def __init__(self, depth: int = DEPTH) -> None:
        super().__init__()
        self.patch_embed = nn.Sequential(nn.Linear(WIDTH, WIDTH), nn.GELU())
        self.cls_token = nn.Parameter(torch.zeros(1, 1, WIDTH))
        self.blocks = Blocks(WIDTH, HEADS, depth)
        self.norm = nn.LayerNorm(WIDTH, eps=1e-6)
        self.attn_pool = AttentionalPooler(WIDTH, POOL_HEADS, POOL_QUERIES)
        self.attn_pool_contrastive = AttentionalPooler(WIDTH, POOL_HEADS, 1)
        self.proj = nn.Parameter(WIDTH**-0.5 * torch.randn(WIDTH, WIDTH))
        nn.init.normal_(self.cls_token, std=1e-6)

    def forward(
        self, features: torch.Tensor, coords: torch.Tensor, patch_size_level0: int
    ) -> torch.Tensor:
        """[N, 768] CONCH v1.5 features at level-0 ``coords`` [N, 2] -> the [768] embedding."""
        tiles, cells = place_on_grid(features.float(), coords, patch_size_level0)
        x = torch.cat([self.cls_token[0], self.patch_embed(tiles)]).unsqueeze(0)
        x = self.norm(self.blocks(x, alibi_bias(cells, HEADS)))
        return self.attn_pool_contrastive(x[0])[0]


def build(small: bool = False) -> TitanSlideEncoder:
    """TITAN's vision tower with random weights (``small``: one block)."""
    return TitanSlideEncoder(SMALL_DEPTH if small else DEPTH)


def embed(
    model: TitanSlideEncoder, features: torch.Tensor, coords: torch.Tensor, size: int
) -> torch.Tensor:
    """The slide embedding, as ``Titan.encode_slide_from_patch_features`` returns it."""
    return model(features, coords, size)


def from_checkpoint(state: dict) -> dict:
    """The official checkpoint's vision tower (``vision_encoder.*``; the text tower dropped)."""
    if not any(key.startswith(CHECKPOINT_PREFIX) for key in state):
        return state
    n = len(CHECKPOINT_PREFIX)
    return {k[n:]: v for k, v in state.items() if k.startswith(CHECKPOINT_PREFIX)}


TITAN_SPEC = SlideEncoderSpec(
    name="titan",
    architecture="ViT (6 blocks, 768 wide, 2-D ALiBi) over the CONCH v1.5 tile grid, "
    "attention-pooled",
    tile_encoder="conch_v1_5",
    tile_dim=768,
    dim=WIDTH,
    magnification="20x",
    patch_size=512,
    licence=CC_BY_NC_ND,
    card="huggingface.co/MahmoodLab/TITAN (vision_transformer.py, configuration_titan.py, "
    "modeling_titan.py); github.com/mahmoodlab/TRIDENT trident/slide_encoder_models/load.py "
    "at a91fa84",
    hf_repo="MahmoodLab/TITAN",
    weights_files=("model.safetensors", "pytorch_model.bin"),
    build=build,
    embed=embed,
    convert=from_checkpoint,
)
