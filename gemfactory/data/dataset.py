"""LLaVA/GEM-style JSON datasets with image, ECG and text-only samples mixed freely."""
from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch.utils.data import Dataset

from ..errors import DataError
from ..fileio import read_utf8
from ..template.base import IGNORE_INDEX

log = logging.getLogger(__name__)
# per sample: the ECGStats counts its loading added, so counts made in dataloader worker processes
# can travel with the batch to the trainer (train/load_stats.py)
ECG_DELTA = "_ecg_stats"


def read_json_list(path: str | Path, kind: str = "data", noun: str = "samples") -> list:
    """A JSON list, or JSON lines (``.jsonl``); file-level problems name the file."""
    p = Path(path)
    text = read_utf8(p, DataError, f"{kind} file not found: {p}")
    if not text.strip():
        raise DataError(f"{p}: the file is empty (expected a JSON list of {noun})")
    try:
        if p.suffix == ".jsonl":
            return [json.loads(line) for line in text.splitlines() if line.strip()]
        items = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{p}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    if not isinstance(items, list):
        raise DataError(f"{p}: expected a JSON list of {noun}, got {type(items).__name__}")
    return items


def load_items(path: str | Path) -> list[dict]:
    """Read a JSON list (or JSON-lines) of samples; structural problems name the file and item."""
    p = Path(path)
    items = read_json_list(p)
    if not items:
        raise DataError(f"{p}: the list of samples is empty")
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise DataError(f"{p}: item {i} is a {type(item).__name__}, expected an object")
        if "conversations" not in item and "conversation" not in item:
            raise DataError(f"{p}: item {i} (id {item.get('id', '?')!r}) has no 'conversations' field")
    return items


@dataclass
class SkipLog:
    """Samples that could not be used, by id, with the reason."""

    skipped: dict[str, str] = field(default_factory=dict)
    seen: int = 0

    def add(self, item_id: str, reason: str) -> None:
        if item_id not in self.skipped:
            log.warning("skipping sample %s: %s", item_id, reason)
        self.skipped[item_id] = reason

    @property
    def fraction(self) -> float:
        return len(self.skipped) / max(self.seen, 1)


class GemDataset(Dataset):
    def __init__(self, path, processor, image_folder=".", ecg_folder=".", on_bad_sample="skip"):
        self.path = str(path)
        self.items = load_items(path)
        self.processor = processor
        self.image_folder = image_folder
        self.ecg_folder = ecg_folder
        self.on_bad_sample = on_bad_sample

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        item = self.items[i]
        stats = getattr(self.processor, "ecg_stats", None)
        before = asdict(stats) if stats is not None else {}
        try:
            sample = self.processor.sample(item, self.image_folder, self.ecg_folder)
        except DataError as exc:
            if self.on_bad_sample == "error":
                raise DataError(f"{self.path}: {exc}") from None
            sample = {"skip": str(exc), "id": str(item.get("id", i))}
        if before:
            sample[ECG_DELTA] = {k: v - before[k] for k, v in asdict(stats).items() if v != before[k]}
        return sample

    def set_epoch(self, epoch: int) -> None:
        """The epoch whose samples are loaded next (``data.augment`` draws per epoch)."""
        augment = getattr(self.processor, "augment", None)
        if augment is not None:
            augment.epoch = epoch

    def texts(self):
        """Every text of the dataset (to train a tiny tokenizer)."""
        for item in self.items:
            for turn in item.get("conversations", item.get("conversation", [])):
                if isinstance(turn, dict) and isinstance(turn.get("value", turn.get("content")), str):
                    yield turn.get("value", turn.get("content"))


class Collator:
    """Pads text (right side for training, left for generation) and stacks modality inputs."""

    def __init__(self, pad_token_id: int, skip_log: SkipLog | None = None, padding_side="right"):
        self.pad_token_id = pad_token_id
        self.skip_log = skip_log if skip_log is not None else SkipLog()
        self.padding_side = padding_side

    def __call__(self, features: list[dict]) -> dict:
        good = self._usable(features)
        batch = {
            "input_ids": self._pad([f["input_ids"] for f in good], self.pad_token_id),
            "attention_mask": self._pad([torch.ones_like(f["input_ids"]) for f in good], 0),
        }
        if all("labels" in f for f in good):
            batch["labels"] = self._pad([f["labels"] for f in good], IGNORE_INDEX)
        batch.update(self._modality_inputs(good))
        return batch

    def _usable(self, features: list[dict]) -> list[dict]:
        """The samples that loaded; the others are counted and logged by id."""
        self.skip_log.seen += len(features)
        good = []
        for f in features:
            if "skip" in f:
                self.skip_log.add(f["id"], f["skip"])
            else:
                good.append(f)
        if not good:
            raise DataError(
                f"a whole batch of {len(features)} samples was unusable; first: {features[0]['skip']}"
            )
        return good

    @staticmethod
    def _modality_inputs(samples: list[dict]) -> dict:
        out = {}
        images = [f for f in samples if "pixel_values" in f]
        if images:  # views of all images, in order; image_sizes lets the model regroup them
            out["pixel_values"] = torch.cat([f["pixel_values"] for f in images])
            out["image_sizes"] = torch.stack([f["image_size"] for f in images])
        ecgs = [f["ecg"] for f in samples if "ecg" in f]
        if ecgs:
            out["ecg"] = torch.stack(ecgs)
        return out

    def _pad(self, seqs: list[torch.Tensor], value: int) -> torch.Tensor:
        longest = max(len(s) for s in seqs)
        out = torch.full((len(seqs), longest), value, dtype=seqs[0].dtype)
        for row, s in enumerate(seqs):
            if self.padding_side == "right":
                out[row, : len(s)] = s
            else:
                out[row, longest - len(s):] = s
        return out
