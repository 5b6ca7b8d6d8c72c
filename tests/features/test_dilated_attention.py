"""LongNet dilated attention (features/dilated_attention.py) against dense references."""

import math

import pytest
import torch

from her2viewer.features.dilated_attention import attention_with_lse, dilated_attention


def _qkv(length, heads=4, dim=8, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(1, length, heads, dim, generator=gen, dtype=torch.float64) for _ in "qkv"]


def _dense(q, k, v, mask=None):
    """Plain softmax attention over the keys ``mask`` [H, L, L] allows (per head)."""
    scores = torch.einsum("blhd,bmhd->bhlm", q, k) / math.sqrt(q.shape[-1])
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return torch.einsum("bhlm,bmhd->blhd", scores.softmax(-1), v)


def test_one_branch_covering_the_sequence_is_full_attention():
    q, k, v = _qkv(11)
    for segment in (11, 64):  # w >= N: one segment of the whole sequence
        out = dilated_attention(q, k, v, (segment,), (1,))
        torch.testing.assert_close(out, _dense(q, k, v))


def test_attention_with_lse_returns_the_log_softmax_denominator():
    q, k, v = (t.transpose(1, 2) for t in _qkv(5))
    out, lse = attention_with_lse(q, k, v)
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    torch.testing.assert_close(lse, torch.logsumexp(scores, -1))
    torch.testing.assert_close(out, scores.softmax(-1) @ v)


def test_two_branches_combine_as_one_softmax_over_their_keys():
    """Segments of 4 (r=1) and one segment of 8 dilated by 2, on 8 tokens and 4 heads.

    Heads 0-1 keep the even tokens of the second branch, heads 2-3 the odd ones (groups of
    ceil(4/2) = 2 heads). Combining by log-sum-exp makes each (token, head) one softmax
    over its own segment of 4 plus, when the token itself is in the head's parity, every
    token of that parity (a key seen by both branches counts twice).
    """
    q, k, v = _qkv(8)
    out = dilated_attention(q, k, v, (4, 8), (1, 2))
    pos = torch.arange(8)
    same_segment = pos[:, None] // 4 == pos[None, :] // 4
    scores = torch.einsum("blhd,bmhd->bhlm", q, k) / math.sqrt(q.shape[-1])
    for head in range(4):
        parity = head // 2
        seen_dilated = (pos[:, None] % 2 == parity) & (pos[None, :] % 2 == parity)
        weight = same_segment.double() + seen_dilated.double()  # multiplicity of each key
        e = torch.exp(scores[0, head]) * weight
        expected = (e / e.sum(-1, keepdim=True)) @ v[0, :, head]
        torch.testing.assert_close(out[0, :, head], expected)


def test_a_segment_of_the_whole_sequence_dilated_is_a_masked_attention():
    """One branch (w=6, r=3) on 6 tokens, 3 heads: head h sees tokens h, h+3 only."""
    q, k, v = _qkv(6, heads=3)
    pos = torch.arange(6)
    mask = torch.stack([(pos[:, None] % 3 == h) & (pos[None, :] % 3 == h) for h in range(3)])
    out = dilated_attention(q, k, v, (6,), (3,))
    expected = _dense(q, k, v, mask).nan_to_num()  # tokens a head does not see: 0
    torch.testing.assert_close(out, expected)


def test_padding_keys_are_zero_vectors_in_the_softmax_as_in_torchscale():
    """5 tokens in segments of 4: the second segment is 1 token plus 3 zero keys."""
    q, k, v = _qkv(5, heads=2)
    out = dilated_attention(q, k, v, (4,), (1,))
    for head in range(2):
        score = (q[0, 4, head] @ k[0, 4, head]) / math.sqrt(8)
        share = torch.exp(score) / (torch.exp(score) + 3)  # three keys of score 0, value 0
        torch.testing.assert_close(out[0, 4, head], share * v[0, 4, head])
    torch.testing.assert_close(out[:, :4], _dense(q[:, :4], k[:, :4], v[:, :4]))


@pytest.mark.parametrize("heads,ratio", [(16, 4), (3, 2), (2, 4)])
def test_every_head_group_keeps_its_offset(heads, ratio):
    """With one segment, token t is seen by head h iff t % r == h // ceil(H / r)."""
    q, k, v = _qkv(8, heads=heads)
    out = dilated_attention(q, k, v, (8,), (ratio,))
    group = math.ceil(heads / ratio)
    pos = torch.arange(8)
    mask = torch.stack([(pos[:, None] % ratio == h // group) & (pos[None, :] % ratio == h // group)
                        for h in range(heads)])  # fmt: skip
    torch.testing.assert_close(out, _dense(q, k, v, mask).nan_to_num())
