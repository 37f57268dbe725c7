"""``sdpa_packed``: PyTorch SDPA that runs one causal attention per packed sample.

Packed rows (data/packing.py) carry no attention mask and position ids that restart at 0 for every
sample. Plain ``sdpa`` then gets a block-diagonal mask over the whole row: work grows with the row
length squared and the masked kernel is slower than the causal one. Without flash-attention's
variable-length kernels (CPU, or a GPU without flash_attn) this kernel cuts each row at its
samples' boundaries and attends within each sample, as flash-attention 2 does: work grows with each
sample's length squared. Anything else (padding masks, a KV cache, unpacked rows) goes to sdpa.

A run of 1-token segments at the end of a row (padding, position 0 each) is attended as one causal
segment: its first token still sees only itself, and the others are padding nobody reads.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

NAME = "sdpa_packed"


def segments(positions: list[int]) -> list[tuple[int, int]]:
    """(start, end) of each sample in one row of position ids; trailing 1-token runs merged."""
    starts = [t for t, p in enumerate(positions) if p == 0] or [0]
    if starts[0] != 0:
        starts.insert(0, 0)
    bounds = list(zip(starts, starts[1:] + [len(positions)]))
    first = len(bounds)
    while first > 0 and bounds[first - 1][1] - bounds[first - 1][0] == 1:
        first -= 1
    if first < len(bounds) - 1:
        bounds[first:] = [(bounds[first][0], bounds[-1][1])]
    return bounds


def layout(position_ids: torch.Tensor, width: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Where each sample's tokens go in a [samples, longest sample] grid: (flat source index per
    grid slot, which slots hold a token, longest sample). Slots past a sample's end repeat index 0;
    they sit after the sample's last token, so causal attention never lets a real token see them."""
    bounds = [(b * width + s, e - s) for b, row in enumerate(position_ids.tolist()) for s, e in segments(row)]
    longest = max(n for _, n in bounds)
    steps = torch.arange(longest)
    starts = torch.tensor([s for s, _ in bounds]).unsqueeze(1)
    lengths = torch.tensor([n for _, n in bounds]).unsqueeze(1)
    valid = steps < lengths
    return torch.where(valid, starts + steps, 0).reshape(-1), valid.reshape(-1), longest


def packed_sdpa_forward(module, query, key, value, attention_mask, dropout: float = 0.0, scaling=None,
                        is_causal=None, **kwargs):
    position_ids = kwargs.get("position_ids")
    batch, heads, q_len, dim = query.shape
    if attention_mask is not None or position_ids is None or key.shape[2] != q_len or q_len < 2:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                      scaling=scaling, is_causal=is_causal, **kwargs)
    index, valid, longest = layout(position_ids.expand(batch, -1), q_len)
    index, valid = index.to(query.device), valid.to(query.device)

    def grid(t):  # [B, h, T, D] -> [samples, h, longest, D]
        flat = t.transpose(1, 2).reshape(batch * q_len, t.shape[1], t.shape[3])
        return flat.index_select(0, index).view(-1, longest, t.shape[1], t.shape[3]).transpose(1, 2)

    out = F.scaled_dot_product_attention(grid(query), grid(key), grid(value), is_causal=True, scale=scaling,
                                         dropout_p=dropout if module.training else 0.0,
                                         enable_gqa=key.shape[1] != heads)
    out = out.transpose(1, 2).reshape(-1, heads, dim)
    flat = out.new_zeros(batch * q_len, heads, dim).index_copy(0, index[valid], out[valid])
    return flat.view(batch, q_len, heads, dim), None


def packed_mask(*, attention_mask=None, q_offset: int = 0, q_length: int = 0, kv_length: int = 0, **kwargs):
    """No mask to build when the kernel finds the samples itself (no padding mask, no cache)."""
    if attention_mask is None and q_offset == 0 and q_length == kv_length:
        return None
    return sdpa_mask(attention_mask=attention_mask, q_offset=q_offset, q_length=q_length, kv_length=kv_length,
                     **kwargs)


AttentionInterface.register(NAME, packed_sdpa_forward)
AttentionMaskInterface.register(NAME, packed_mask)
