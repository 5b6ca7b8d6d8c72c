"""Dilated attention (LongNet) in plain torch, as Prov-GigaPath's slide encoder runs it.

Ding et al. 2023, "LongNet: Scaling Transformers to 1,000,000,000 Tokens"
(arXiv:2307.02486), section 2.2. The reference is the torchscale copy that Prov-GigaPath
trained with: github.com/prov-gigapath/prov-gigapath at 09d8e87,
``gigapath/torchscale/component/dilated_attention.py`` (``DilatedAttention.gathering``,
``dense_to_sparse``, ``sparse_to_dense``, ``scattering``) and
``component/multihead_attention.py`` (``attention_ops``, flash-attention path). Nothing is
copied from it; what it computes, and this module too, for one branch (segment ``w``,
dilation ``r``) of a sequence of ``L`` tokens and ``H`` heads:

1. ``w`` becomes ``min(w, L)``; the sequence is padded with zero vectors to a multiple of
   ``w`` and cut into segments of ``w``; each segment is padded with zero vectors to a
   multiple of ``r``;
2. the heads fall into ``r`` groups of ``ceil(H / r)`` heads; group ``g`` keeps the
   tokens ``g, g + r, g + 2r, ...`` of every segment;
3. softmax attention (scale ``head_dim ** -0.5``) runs within each sparse segment. The
   zero vectors of the padding are not masked: they are keys of score 0 and value 0, as
   in the reference (flash attention without a mask), so a padded segment's softmax has
   a few extra terms in its denominator;
4. outputs and log-sum-exps are put back at their tokens; a token a head did not see in
   a branch gets output 0 and log-sum-exp -inf (the reference: -1e8).

The branches are combined per token and head, weighted by ``softmax`` over branches of
their log-sum-exps, i.e. each branch by its share of the softmax denominator, which
equals one softmax over the union of the keys the branches saw (disjoint unions).
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

#: Scores held at once by :func:`attention_with_lse` (elements; about 256 MB in float32).
SCORE_BUDGET = 1 << 26


def attention_with_lse(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax attention that also returns each query's log-sum-exp.

    Parameters
    ----------
    q, k, v : torch.Tensor
        ``[..., M, D]`` queries, keys and values (the leading dimensions alike).

    Returns
    -------
    tuple of torch.Tensor
        The output ``[..., M, D]`` and the log-sum-exp of the scaled scores ``[..., M]``
        (in float32, or float64 for float64 inputs).
    """
    lead, (m, d) = q.shape[:-2], q.shape[-2:]
    q, k, v = (t.reshape(-1, m, d) for t in (q, k, v))
    step = max(1, SCORE_BUDGET // max(1, m * m))
    precise = torch.promote_types(q.dtype, torch.float32)
    outs, lses = [], []
    for start in range(0, q.shape[0], step):
        part = slice(start, start + step)
        scores = (q[part] @ k[part].transpose(1, 2)).to(precise) * d**-0.5
        lse = torch.logsumexp(scores, dim=-1)
        outs.append(torch.exp(scores - lse[..., None]).to(v.dtype) @ v[part])
        lses.append(lse)
    return torch.cat(outs).reshape(*lead, m, d), torch.cat(lses).reshape(*lead, m)


def _head_offsets(heads: int, ratio: int, device: torch.device) -> torch.Tensor:
    """The offset in its segment of the tokens each head keeps: ``h // ceil(H / r)``."""
    return torch.arange(heads, device=device) // math.ceil(heads / ratio)


def _branch(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, segment: int, ratio: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """One (segment, dilation) branch: output ``[B, L, H, D]`` and log-sum-exp ``[B, L, H]``."""
    b, length, heads, d = q.shape
    w = min(segment, length)
    n, m = math.ceil(length / w), math.ceil(w / ratio)
    offsets = _head_offsets(heads, ratio, q.device)
    index = offsets[:, None] + ratio * torch.arange(m, device=q.device)  # [H, m]
    index = index.expand(b * n, heads, m)

    def sparse(x: torch.Tensor) -> torch.Tensor:  # [B, L, H, D] -> [B*n, H, m, D]
        x = F.pad(x, (0, 0, 0, 0, 0, n * w - length)).reshape(b * n, w, heads, d)
        x = F.pad(x, (0, 0, 0, 0, 0, m * ratio - w)).transpose(1, 2)
        return x.gather(2, index[..., None].expand(-1, -1, -1, d))

    out, lse = attention_with_lse(sparse(q), sparse(k), sparse(v))
    dense = out.new_zeros(b * n, heads, m * ratio, d)
    dense.scatter_(2, index[..., None].expand(-1, -1, -1, d), out)
    dense_lse = lse.new_full((b * n, heads, m * ratio), float("-inf"))
    dense_lse.scatter_(2, index, lse)
    dense = dense[:, :, :w].transpose(1, 2).reshape(b, n * w, heads, d)[:, :length]
    dense_lse = dense_lse[:, :, :w].transpose(1, 2).reshape(b, n * w, heads)[:, :length]
    return dense, dense_lse


def dilated_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    segment_lengths: tuple[int, ...],
    dilation_ratios: tuple[int, ...],
) -> torch.Tensor:
    """LongNet's dilated attention of a whole sequence (no causal mask).

    Parameters
    ----------
    q, k, v : torch.Tensor
        ``[B, L, H, D]`` projected queries, keys and values.
    segment_lengths, dilation_ratios : tuple of int
        One branch per pair (``w``, ``r``).

    Returns
    -------
    torch.Tensor
        ``[B, L, H, D]``: the branches' outputs weighted by their softmax denominators.
    """
    branches = zip(segment_lengths, dilation_ratios, strict=True)
    outs, lses = zip(*(_branch(q, k, v, w, r) for w, r in branches), strict=True)
    lse = torch.stack(lses)
    # A token no branch showed a head (possible only without a ratio-1 branch) gets 0.
    weights = torch.softmax(lse.nan_to_num(neginf=torch.finfo(lse.dtype).min), dim=0)
    return sum(o * wt[..., None].to(o.dtype) for o, wt in zip(outs, weights, strict=True))
