"""Padding-free packing: a batch's samples laid end to end in rows of at most ``pack_tokens``.

Follows transformers' padding-free convention (``DataCollatorWithFlattening``): no
``attention_mask``, and ``position_ids`` that restart at 0 for every sample. From those restarts
transformers builds a block-diagonal causal mask (eager / sdpa) or variable-length kernels
(flash-attention), so no token attends across samples. The first label of every sample is
ignored, so no token is predicted from the previous sample. Row tails are filled with pad tokens
that each restart at position 0 (a block of their own) and carry no label. The batch also carries
the segment offsets as transformers' variable-length kwargs (``cu_seq_lens_q`` ...), so neither the
model nor its layers have to find the boundaries again (model/packed_attention.py).

Image and ECG inputs are emitted in the order their placeholders appear in the packed rows,
which is the order :meth:`GemForCausalLM.embed` fills them in.
"""
from __future__ import annotations

import torch

from ..model.packed_attention import varlen_kwargs
from ..template.base import IGNORE_INDEX
from .dataset import Collator

# a key of the batch that is not a model input: the number of non-pad tokens (GemTrainer pops it)
REAL_TOKENS = "num_real_tokens"


def pack_rows(lengths: list[int], budget: int) -> list[list[int]]:
    """Sample indices per row, each row's total <= budget (a sample longer than the budget gets a
    row of its own). First-fit decreasing sets the number of rows; the samples are then spread
    over that many rows longest first onto the emptiest row, so that rows end up of similar length
    (less padding in the widest row), when that fits. Deterministic; rows keep index order."""
    order = sorted(range(len(lengths)), key=lambda k: (-lengths[k], k))
    rows: list[list[int]] = []
    room: list[int] = []
    for i in order:  # first-fit decreasing
        for r, left in enumerate(room):
            if lengths[i] <= left:
                rows[r].append(i)
                room[r] -= lengths[i]
                break
        else:
            rows.append([i])
            room.append(budget - lengths[i])
    balanced: list[list[int]] = [[] for _ in rows]
    fill = [0] * len(rows)
    for i in order:  # longest processing time first
        r = min(range(len(rows)), key=lambda k: (fill[k], k))
        if fill[r] + lengths[i] > budget and fill[r] > 0:
            balanced = rows  # does not fit balanced: keep first-fit
            break
        balanced[r].append(i)
        fill[r] += lengths[i]
    return [sorted(row) for row in balanced]


class PackingCollator(Collator):
    """Packs the usable samples of a batch into rows of at most ``pack_tokens`` tokens.

    ``flatten``: the rows are then laid end to end as one row without padding (transformers'
    ``DataCollatorWithFlattening`` layout), for kernels whose cost follows the samples, not the
    rows (``sdpa_packed``, ``flash_attention_2``: model/packed_attention.py); a 2-D batch of rows
    only helps kernels that build a mask over each row (eager)."""

    def __init__(self, pad_token_id: int, pack_tokens: int, skip_log=None, flatten: bool = False):
        super().__init__(pad_token_id, skip_log, padding_side="right")
        if pack_tokens < 1:
            raise ValueError(f"pack_tokens must be >= 1, got {pack_tokens}")
        self.pack_tokens = pack_tokens
        self.flatten = flatten

    def __call__(self, features: list[dict]) -> dict:
        good = self._usable(features)
        rows = pack_rows([len(f["input_ids"]) for f in good], self.pack_tokens)
        if self.flatten:
            rows = [[i for row in rows for i in row]]
        width = max(sum(len(good[i]["input_ids"]) for i in row) for row in rows)
        ids = torch.full((len(rows), width), self.pad_token_id, dtype=good[0]["input_ids"].dtype)
        labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
        positions = torch.zeros((len(rows), width), dtype=torch.long)  # pads: 0, each its own block
        order, segment_lengths = [], []
        for r, row in enumerate(rows):
            at = 0
            for i in row:
                f = good[i]
                n = len(f["input_ids"])
                segment_lengths.append(n)
                ids[r, at:at + n] = f["input_ids"]
                if "labels" in f:
                    labels[r, at + 1:at + n] = f["labels"][1:]  # the first token: not from the previous sample
                positions[r, at:at + n] = torch.arange(n)
                order.append(f)
                at += n
            if at < width:  # the row's padding: one segment of its own
                segment_lengths.append(width - at)
        batch = {"input_ids": ids, "position_ids": positions,
                 REAL_TOKENS: torch.tensor(sum(len(f["input_ids"]) for f in good)),
                 **varlen_kwargs(segment_lengths)}  # sample bounds for the attention kernels, once per batch
        if all("labels" in f for f in good):
            batch["labels"] = labels
        batch.update(self._modality_inputs(order))
        return batch
