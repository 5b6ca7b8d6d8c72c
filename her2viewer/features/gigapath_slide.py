"""Prov-GigaPath's slide encoder: Prov-GigaPath tile features -> a 768-d slide embedding.

Xu et al. 2024, "A whole-slide foundation model for digital pathology from real-world
data" (Nature 630, 181-188). The reference is github.com/prov-gigapath/prov-gigapath at
09d8e87: ``gigapath/slide_encoder.py`` (``LongNetViT``, ``gigapath_slide_enc12l768d``,
``get_optimal_segment_length``, ``coords_to_pos``), ``gigapath/pos_embed.py``
(``get_2d_sincos_pos_embed``), ``gigapath/torchscale/model/LongNetConfig.py``
(``LongNet_12_layers_768_dim``), ``torchscale/architecture/config.py`` (``EncoderConfig``
defaults: pre-norm, ``subln``, LayerNorm eps 1e-5, no embedding LayerNorm or scaling),
``torchscale/architecture/encoder.py`` (``Encoder``, ``EncoderLayer``) and
``torchscale/component/{multihead_attention,feedforward_network}.py``. Our module has the
official parameter names and shapes (``patch_embed.proj``, ``cls_token``,
``encoder.layers.N.self_attn.q_proj``, ..., ``encoder.layer_norm``, ``norm``), so the
``model`` state dict of the official ``slide_encoder.pth`` loads strictly. The dilated
attention is :mod:`features.dilated_attention` (pure torch, no torchscale or flash-attn).

What the reference does at inference (one slide), and this module too:

1. tokens: ``Linear(1536, 768)`` of each tile feature plus a fixed 2-D sin-cos position
   embedding of the tile's cell ``floor(coords / tile_size)`` on a 1000 x 1000 grid
   (first half from the y cell, second half from the x cell), with TRIDENT's
   ``tile_size = patch_size_level0`` (github.com/mahmoodlab/TRIDENT
   ``trident/slide_encoder_models/load.py``, ``GigaPathSlideEncoder``); a CLS token in
   front (its position embedding is zero);
2. twelve pre-norm LongNet layers (768 wide, 16 heads, GELU MLP of 3072): attention is
   dilated attention with segments (1024, 5792, 32768, 185363, 1048576) and dilations
   (1, 2, 4, 8, 16), followed by a LayerNorm (``inner_attn_ln``, "subln") before its
   output projection; the MLP has a LayerNorm between its two layers (``ffn_layernorm``);
3. the encoder's final LayerNorm, then the model's ``norm`` (eps 1e-6); the slide
   embedding is the CLS token (``global_pool=False``), as the README's
   ``slide_encoder(tile_embed, coordinates)``. ``all_layers=True`` gives the official
   ``all_layer_embed=True`` outputs instead: ``norm`` of the CLS token after the input
   and after every layer, without the encoder's final LayerNorm (TRIDENT takes the
   12th of those 13, mean-pooled).

The reference does not order the tiles (LongNet's segments depend on the order); its
tiling writes them row by row (``gigapath/preprocessing/data/tiling.py``,
``tile_array_2d``), so this module sorts them by (y, x) first: the embedding does not
depend on the order of the rows of a features file.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from her2viewer.errors import ModelError
from her2viewer.features.dilated_attention import dilated_attention
from her2viewer.features.slide_encoders import SlideEncoderSpec

#: ``get_optimal_segment_length(262144, 256)``: 2 ** linspace(10, 20, 5), truncated.
SEGMENT_LENGTHS = (1024, 5792, 32768, 185363, 1048576)
DILATION_RATIOS = (1, 2, 4, 8, 16)
#: The CI variant: two layers and short segments, so ~20 tiles exercise every dilation.
SMALL_DEPTH, SMALL_SEGMENTS, SMALL_RATIOS = 2, (4, 8, 16), (1, 2, 4)
GRID = 1000  # slide_ngrids: cells per side of the position-embedding grid
TILE_DIM, DIM, DEPTH, HEADS, FFN_DIM = 1536, 768, 12, 16, 3072


def sincos_position(cells: torch.Tensor, dim: int) -> torch.Tensor:
    """MAE's 2-D sin-cos embedding of grid cells, as ``get_2d_sincos_pos_embed`` tabulates it.

    Parameters
    ----------
    cells : torch.Tensor
        ``[N, 2]`` integer (x, y) cells.
    dim : int
        Embedding size (a multiple of 4).

    Returns
    -------
    torch.Tensor
        ``[N, dim]`` float32: sin and cos of the y cell, then of the x cell, at the
        frequencies ``10000 ** (-i / (dim / 4))``.
    """
    quarter = dim // 4
    omega = 1.0 / 10000 ** (
        torch.arange(quarter, dtype=torch.float64, device=cells.device) / quarter
    )
    halves = []
    for axis in (1, 0):  # the table's first half is its column index, which is y here
        angle = cells[:, axis, None].double() * omega
        halves += [torch.sin(angle), torch.cos(angle)]
    return torch.cat(halves, dim=1).float()


class _FeedForward(nn.Module):
    """fc1 -> GELU -> LayerNorm ("subln") -> fc2."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)
        self.ffn_layernorm = nn.LayerNorm(hidden, eps=1e-5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.ffn_layernorm(F.gelu(self.fc1(x).float()).to(x.dtype)))


class _DilatedSelfAttention(nn.Module):
    """q/k/v projections, dilated attention, LayerNorm ("subln"), output projection."""

    def __init__(self, dim: int, heads: int, segments: tuple, ratios: tuple) -> None:
        super().__init__()
        self.heads, self.segments, self.ratios = heads, segments, ratios
        self.q_proj, self.k_proj, self.v_proj, self.out_proj = (
            nn.Linear(dim, dim) for _ in range(4)
        )
        self.inner_attn_ln = nn.LayerNorm(dim, eps=1e-5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, length, dim = x.shape
        q, k, v = (
            p(x).view(b, length, self.heads, -1) for p in (self.q_proj, self.k_proj, self.v_proj)
        )
        out = dilated_attention(q, k, v, self.segments, self.ratios).reshape(b, length, dim)
        return self.out_proj(self.inner_attn_ln(out))


class _EncoderLayer(nn.Module):
    """A pre-norm LongNet layer: x + attn(LN(x)), then x + ffn(LN(x))."""

    def __init__(self, dim: int, heads: int, segments: tuple, ratios: tuple) -> None:
        super().__init__()
        self.self_attn = _DilatedSelfAttention(dim, heads, segments, ratios)
        self.self_attn_layer_norm = nn.LayerNorm(dim, eps=1e-5)
        self.ffn = _FeedForward(dim, FFN_DIM)
        self.final_layer_norm = nn.LayerNorm(dim, eps=1e-5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.self_attn(self.self_attn_layer_norm(x))
        return x + self.ffn(self.final_layer_norm(x))


class _LongNetEncoder(nn.Module):
    """The layers and the final LayerNorm (torchscale's ``Encoder``, ``normalize_output``)."""

    def __init__(self, depth: int, segments: tuple, ratios: tuple) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            _EncoderLayer(DIM, HEADS, segments, ratios) for _ in range(depth)
        )
        self.layer_norm = nn.LayerNorm(DIM, eps=1e-5)


class GigaPathSlideEncoder(nn.Module):
    """Prov-GigaPath's LongNet slide encoder (``gigapath_slide_enc12l768d``).

    Parameters
    ----------
    depth : int
        LongNet layers (12; 2 in the CI variant).
    segments, ratios : tuple of int
        Dilated attention's segment lengths and dilation ratios.
    """

    def __init__(self, depth: int, segments: tuple, ratios: tuple) -> None:
        super().__init__()
        self.patch_embed = nn.ModuleDict({"proj": nn.Linear(TILE_DIM, DIM)})
        self.cls_token = nn.Parameter(torch.randn(1, 1, DIM) * 0.02)
        self.encoder = _LongNetEncoder(depth, segments, ratios)
        self.norm = nn.LayerNorm(DIM, eps=1e-6)

    def tokens(self, features: torch.Tensor, coords: torch.Tensor, tile_size: int) -> torch.Tensor:
        """The input sequence ``[1, N + 1, 768]``: CLS, then the tiles sorted by (y, x)."""
        order = torch.argsort(coords[:, 0], stable=True)
        order = order[torch.argsort(coords[order, 1], stable=True)]
        cells = torch.div(coords[order], tile_size, rounding_mode="floor").long()
        outside = (cells < 0) | (cells >= GRID)
        if outside.any():
            x, y = coords[order][outside.any(1)][0].tolist()
            raise ModelError(
                f"The tile at level-0 ({x}, {y}) lies outside gigapath_slide's grid of "
                f"{GRID} x {GRID} tiles of {tile_size} px, where its positions are defined."
            )
        proj = self.patch_embed["proj"]
        x = proj(features[order].to(proj.weight.dtype))
        x = x + sincos_position(cells, DIM).to(x)
        return torch.cat([self.cls_token[0], x])[None]

    def forward(
        self,
        features: torch.Tensor,
        coords: torch.Tensor,
        tile_size: int,
        all_layers: bool = False,
    ) -> torch.Tensor:
        """The slide embedding ``[768]`` (or ``[depth + 1, 768]`` with ``all_layers``).

        Parameters
        ----------
        features : torch.Tensor
            ``[N, 1536]`` Prov-GigaPath tile features.
        coords : torch.Tensor
            ``[N, 2]`` level-0 (x, y) of the tiles' corners.
        tile_size : int
            A tile's side in level-0 px (``patch_size_level0``).
        all_layers : bool
            The official ``all_layer_embed`` outputs instead of the last one.

        Raises
        ------
        ModelError
            A tile outside the 1000 x 1000 position grid.
        """
        x = self.tokens(features, coords, tile_size)
        states = [x]
        for layer in self.encoder.layers:
            x = layer(x)
            states.append(x)
        if all_layers:
            return self.norm(torch.cat([s[:, 0] for s in states]))
        return self.norm(self.encoder.layer_norm(x[:, 0]))[0]


def build(small: bool = False) -> GigaPathSlideEncoder:
    """The network with random initialisation; ``small``: 2 layers, segments (4, 8, 16)."""
    if small:
        return GigaPathSlideEncoder(SMALL_DEPTH, SMALL_SEGMENTS, SMALL_RATIOS)
    return GigaPathSlideEncoder(DEPTH, SEGMENT_LENGTHS, DILATION_RATIOS)


def embed(
    model: GigaPathSlideEncoder, features: torch.Tensor, coords: torch.Tensor, tile_size: int
) -> torch.Tensor:
    """The [768] slide embedding of one slide's tile features (see the module docstring)."""
    return model(features, coords, tile_size)


GIGAPATH_SLIDE_SPEC = SlideEncoderSpec(
    name="gigapath_slide",
    architecture="LongNet ViT, 12 layers x 768, dilated attention; CLS token",
    tile_encoder="prov_gigapath",
    tile_dim=TILE_DIM,
    dim=DIM,
    magnification="20x (0.5 um/px)",
    patch_size=256,
    licence="Apache-2.0, gated (research use per the model card)",
    card="huggingface.co/prov-gigapath/prov-gigapath; github.com/prov-gigapath/prov-gigapath "
    "gigapath/slide_encoder.py at 09d8e87",
    hf_repo="prov-gigapath/prov-gigapath",
    weights_files=("slide_encoder.pth",),
    build=build,
    embed=embed,
)
