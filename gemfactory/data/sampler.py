"""Training order grouped by modality and length (``data.group_by``).

The order is a pure function of (seed, epoch): the trainer calls :meth:`set_epoch` at each epoch
(accelerate forwards it through its data-loader wrappers), so resuming replays the same order and
skips the batches already seen.

Distributed training: the sampler yields one global order for all ranks; accelerate's
``BatchSamplerShard`` then gives rank r the r-th of every ``world_size`` consecutive per-device
batches. So the order is built from *global* batches of ``batch_size * world_size`` indices, each
drawn from one modality group, sorted longest first and cut into per-rank shards of similar length.
"""
from __future__ import annotations

import torch
from torch.utils.data import Sampler

from ..errors import DataError
from ..template.base import normalize_conversation

MODALITIES = ("text", "ecg", "image", "ecg+image")


def item_modality(item: dict) -> str:
    image, ecg = bool(item.get("image")), bool(item.get("ecg"))
    return "ecg+image" if image and ecg else "image" if image else "ecg" if ecg else "text"


def item_lengths(items: list[dict], tokenizer, modality_tokens: dict[str, int]) -> list[int]:
    """Approximate token counts without reading images or records: the turns' text tokens
    (no template) + the tokens each image / ECG expands to."""
    texts = []
    for item in items:
        try:
            turns = normalize_conversation(item.get("conversations", item.get("conversation")), "?")
            texts.append("\n".join(t.text for t in turns))
        except DataError:  # a bad sample is reported when it is loaded; any length will do here
            texts.append("")
    counts = [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]
    extra = {m: sum(modality_tokens.get(k, 0) for k in ("image", "ecg") if k in m) for m in MODALITIES}
    return [n + extra[item_modality(item)] for n, item in zip(counts, items)]


class GroupedSampler(Sampler[int]):
    """Every index exactly once per epoch; global batches homogeneous in modality (``by_modality``)
    except for one mixed batch made of the groups' remainders, and similar in length."""

    def __init__(self, lengths: list[int], modalities: list[str] | None, batch_size: int,
                 world_size: int = 1, seed: int = 0, megabatch_batches: int = 8):
        if modalities is not None and len(modalities) != len(lengths):
            raise ValueError(f"{len(modalities)} modalities for {len(lengths)} lengths")
        self.lengths = list(lengths)
        self.modalities = modalities
        self.global_batch = batch_size * world_size
        self.world_size = world_size
        self.seed = seed
        self.megabatch = self.global_batch * megabatch_batches
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self):
        return iter(self.order(self.epoch))

    def order(self, epoch: int) -> list[int]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        groups: dict[str, list[int]] = {}
        for i in range(len(self.lengths)):
            groups.setdefault(self.modalities[i] if self.modalities else "all", []).append(i)
        batches, rest = [], []
        for key in sorted(groups):
            members = groups[key]
            shuffled = [members[k] for k in torch.randperm(len(members), generator=g).tolist()]
            for start in range(0, len(shuffled), self.megabatch):
                mega = sorted(shuffled[start:start + self.megabatch], key=lambda i: -self.lengths[i])
                for b in range(0, len(mega), self.global_batch):
                    chunk = mega[b:b + self.global_batch]
                    (batches.append(chunk) if len(chunk) == self.global_batch else rest.extend(chunk))
        rest.sort(key=lambda i: -self.lengths[i])  # the groups' remainders: mixed batches
        batches += [rest[b:b + self.global_batch] for b in range(0, len(rest), self.global_batch)]
        short = batches.pop() if batches and len(batches[-1]) < self.global_batch else []
        order = [i for k in torch.randperm(len(batches), generator=g).tolist() for i in batches[k]]
        return order + short  # a short batch only at the end, so later batches stay aligned
