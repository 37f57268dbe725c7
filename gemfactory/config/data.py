"""``data``: where samples come from and how they are batched, cached and augmented."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

from .augment import AugmentConfig
from .fields import help_field


@dataclass
class DataConfig:
    train: Optional[str] = help_field("training JSON/JSONL (LLaVA format)", default=None)
    eval: Optional[str] = help_field("held-out JSON/JSONL scored after training", default=None)
    image_folder: str = help_field("folder the items' `image` paths are relative to", default=".")
    ecg_folder: str = help_field("folder the items' `ecg` record paths are relative to", default=".")
    max_length: int = help_field("longest tokenised sample; longer ones are cropped", default=2048)
    on_bad_sample: Literal["skip", "error"] = help_field(
        "a sample that cannot be used (missing file, bad record, no supervised token): skip it or stop",
        default="skip")
    max_bad_fraction: float = help_field("a training run stops once more than this share was skipped",
                                         default=0.05)
    random_visual_prompts: float = help_field(
        "ViP-LLaVA augmentation: chance that an image sample without visual_prompts gets one random prompt "
        "drawn on it (seeded from the sample id)", default=0.0)
    num_workers: int = help_field("dataloader worker processes", default=0)
    packing: bool = help_field("padding-free training: each batch's samples packed into rows of at most "
                               "pack_tokens tokens; attention and positions restart at every sample", default=False)
    pack_tokens: Optional[int] = help_field("row length of packed batches (default: max_length)", default=None)
    group_by: Literal["none", "length", "modality_length"] = help_field(
        "training order: none (shuffled), length (similar lengths together) or modality_length (text / ECG / "
        "image / both grouped first, then by length); deterministic for seed + epoch", default="none")
    feature_cache: bool = help_field(
        "a stage that keeps the vision tower / ECG encoder frozen computes each input's features once and "
        "reuses them from safetensors shards in feature_cache_dir", default=False)
    feature_cache_dir: Optional[str] = help_field("default <output_dir>/feature_cache", default=None)
    feature_cache_max_gb: Optional[float] = help_field(
        "size cap of feature_cache_dir in GB (all towers together): least recently used shards are removed "
        "once a write takes the folder over it; unset: no cap (see `gemfactory cache prune`)", default=None)
    augment: AugmentConfig = help_field(
        "ECG augmentation of training samples (gain, noise, baseline wander, time shift, crop, lead dropout), "
        "each with a probability `p` (default 0: off)", default_factory=AugmentConfig)

    def problems(self) -> list[tuple[str, str]]:
        """(key path under data, what is wrong) for every bad value."""
        out = []
        if not 0 <= self.max_bad_fraction <= 1:
            out.append(("max_bad_fraction", "must be within [0, 1]"))
        if self.feature_cache_max_gb is not None and not self.feature_cache_max_gb > 0:
            out.append(("feature_cache_max_gb", f"expected a positive number of GB, got {self.feature_cache_max_gb}"))
        if self.pack_tokens is not None and (not self.packing or self.pack_tokens < 1):
            out.append(("pack_tokens", f"needs data.packing: true and a value >= 1, got {self.pack_tokens}"))
        out += [(f"augment.{key}", problem) for key, problem in self.augment.problems()]
        if not 0 <= self.random_visual_prompts <= 1:
            out.append(("random_visual_prompts", f"must be within [0, 1], got {self.random_visual_prompts}"))
        return out
