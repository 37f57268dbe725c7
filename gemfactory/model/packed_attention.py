"""Packed rows attended per sample, with the sample boundaries worked out once per batch.

Packed rows (data/packing.py) carry no attention mask and position ids that restart at 0 for every
sample. The boundaries travel as transformers' variable-length kwargs (``cu_seq_lens_q/k``: offsets
of the segments in the batch's rows laid end to end, ``max_length_q/k``): the collator emits them,
or :func:`varlen_kwargs_from_positions` derives them once per forward pass; every layer reuses them,
so no layer looks at the position ids or waits for the device. With them:

- ``flash_attention_2`` runs flash-attn's variable-length kernel over all rows at once
  (transformers reads those kwargs; from position ids alone it finds samples only in 1-row batches);
- ``sdpa_packed`` (this module, what the trainer picks under sdpa): on CUDA in half precision
  PyTorch's own ``varlen_attn`` (flash kernel, no copies); elsewhere (CPU, fp32) one causal SDPA
  call per segment on views of the row (``split``; its backward is a concatenation), so the work
  grows with each sample's length squared and no token is copied into a padded grid.

A run of 1-token segments at the end of a row (padding, position 0 each) is one causal segment: its
first token still sees only itself, and the others are padding nobody reads.
"""
from __future__ import annotations

from itertools import accumulate

import torch
import torch.nn.functional as F
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

try:  # PyTorch's variable-length flash kernel (CUDA only)
    from torch.nn.attention.varlen import varlen_attn
except ImportError:  # older PyTorch
    varlen_attn = None

NAME = "sdpa_packed"
VARLEN_KERNELS = (NAME, "flash_attention_2")  # cost follows the samples: packed rows can be laid end to end
VARLEN_KEYS = ("cu_seq_lens_q", "cu_seq_lens_k", "max_length_q", "max_length_k")


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


def varlen_kwargs(lengths: list[int]) -> dict:
    """transformers' variable-length kwargs for segments of these lengths (all rows end to end;
    no segment crosses a row's end)."""
    offsets = torch.tensor([0, *accumulate(lengths)], dtype=torch.int32)
    longest = max(lengths)
    return {"cu_seq_lens_q": offsets, "cu_seq_lens_k": offsets, "max_length_q": longest, "max_length_k": longest}


def varlen_kwargs_from_positions(position_ids: torch.Tensor, rows: int) -> dict:
    """The same, read from position ids that restart at every sample (one device-to-host copy)."""
    lengths = [e - s for row in position_ids.expand(rows, -1).tolist() for s, e in segments(row)]
    kwargs = varlen_kwargs(lengths)
    offsets = kwargs["cu_seq_lens_q"].to(position_ids.device)
    return {**kwargs, "cu_seq_lens_q": offsets, "cu_seq_lens_k": offsets}


_last_lengths: tuple[torch.Tensor | None, list[int]] = (None, [])


def _segment_lengths(offsets: torch.Tensor) -> list[int]:
    """Python lengths of the segments; every layer gets the same offsets tensor, so they are
    read once per batch."""
    global _last_lengths
    if _last_lengths[0] is not offsets:
        _last_lengths = (offsets, offsets.diff().tolist())
    return _last_lengths[1]


def _use_varlen_kernel(query: torch.Tensor, dropout: float) -> bool:
    return (varlen_attn is not None and query.is_cuda and query.dtype in (torch.float16, torch.bfloat16)
            and dropout == 0.0)


def packed_sdpa_forward(module, query, key, value, attention_mask, dropout: float = 0.0, scaling=None,
                        is_causal=None, **kwargs):
    batch, heads, q_len, dim = query.shape
    offsets = kwargs.get("cu_seq_lens_q")
    unpacked = attention_mask is not None or key.shape[2] != q_len or q_len < 2
    if offsets is None and not unpacked and kwargs.get("position_ids") is not None:
        kwargs.update(varlen_kwargs_from_positions(kwargs["position_ids"], batch))  # called outside GemForCausalLM
        offsets = kwargs["cu_seq_lens_q"]
    if unpacked or offsets is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                      scaling=scaling, is_causal=is_causal, **kwargs)
    dropout = dropout if module.training else 0.0
    gqa = key.shape[1] != heads
    if _use_varlen_kernel(query, dropout):
        def flat(t):  # [B, h, T, D] -> [B * T, h, D]
            return t.transpose(1, 2).reshape(batch * q_len, t.shape[1], dim)

        longest = kwargs["max_length_q"]
        out = varlen_attn(flat(query), flat(key), flat(value), offsets, offsets, longest, longest,
                          scale=scaling, window_size=(-1, 0), enable_gqa=gqa)
        return out.view(batch, q_len, heads, dim), None
    lengths = iter(_segment_lengths(offsets))
    rows = []
    for q, k, v in zip(query.unbind(0), key.unbind(0), value.unbind(0)):  # [h, T, D] each
        row, filled = [], 0
        while filled < q_len:
            row.append(next(lengths))
            filled += row[-1]
        pieces = [F.scaled_dot_product_attention(qs, ks, vs, is_causal=True, scale=scaling, dropout_p=dropout,
                                                 enable_gqa=gqa)
                  for qs, ks, vs in zip(q.split(row, 1), k.split(row, 1), v.split(row, 1))]
        rows.append(torch.cat(pieces, 1) if len(pieces) > 1 else pieces[0])
    return torch.stack(rows).transpose(1, 2).contiguous(), None


def packed_mask(*, attention_mask=None, q_offset: int = 0, q_length: int = 0, kv_length: int = 0, **kwargs):
    """No mask to build when the kernel finds the samples itself (no padding mask, no cache)."""
    if attention_mask is None and q_offset == 0 and q_length == kv_length:
        return None
    return sdpa_mask(attention_mask=attention_mask, q_offset=q_offset, q_length=q_length, kv_length=kv_length,
                     **kwargs)


AttentionInterface.register(NAME, packed_sdpa_forward)
AttentionMaskInterface.register(NAME, packed_mask)
