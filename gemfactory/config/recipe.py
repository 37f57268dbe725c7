"""``training`` and the whole recipe: the four sections together."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Optional

from ..errors import ConfigError
from .data import DataConfig
from .fields import help_field
from .model import ModelConfig
from .stage import StageConfig


@dataclass
class TrainingConfig:
    output_dir: str = help_field("run folder: one sub-folder per stage, `latest` names the newest model",
                                 default="runs/gemfactory")
    seed: int = help_field("seed of weights init, data order, augmentation and dropout", default=42)
    deepspeed: Optional[str] = help_field("zero2 / zero3 / zero3_offload or a JSON path; applies to every stage",
                                          default=None)
    bf16: bool = help_field("bfloat16 mixed precision", default=False)
    logging_steps: int = help_field("log loss and grad norm every N steps", default=10)
    save_steps: int = help_field("0: save at the end of each stage only; N: also a resumable checkpoint every "
                                 "N steps", default=0)
    save_total_limit: int = help_field("resumable checkpoints kept per stage (the newest)", default=2)
    gradient_checkpointing: bool = help_field("recompute LLM activations in the backward pass", default=False)
    fused_loss: bool = help_field(
        "lm_head + cross-entropy over the labelled tokens in chunks, so the [tokens, vocab] logits are never "
        "held whole (liger-kernel's fused kernel on CUDA when installed); training loss only", default=False)
    report_to: list[str] = help_field("metric loggers; [] for none", default_factory=lambda: ["tensorboard"])


@dataclass
class Recipe:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    stages: list[StageConfig] = field(default_factory=lambda: [StageConfig()])
    training: TrainingConfig = field(default_factory=TrainingConfig)
    description: str = help_field("one line shown by recipe check and in eval records", default="")
    source: str = field(default="<dict>", metadata={"internal": True})

    def stage(self, name: str) -> StageConfig:
        for s in self.stages:
            if s.name == name:
                return s
        raise ConfigError(f"{self.source}: no stage named {name!r} ({[s.name for s in self.stages]})")

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d.pop("source")
        return d

    def problems(self) -> list[tuple[str, str]]:
        """(key path, what is wrong) over every section, in the order a reader meets them."""
        if not self.stages:
            return [("stages", "at least one stage is required")]
        names = [s.name for s in self.stages]
        dup = sorted({n for n in names if names.count(n) > 1})
        out = [("stages", f"duplicate stage names {dup}")] if dup else []
        for s in self.stages:
            out += [(f"stages.{s.name}.{key}", problem) for key, problem in s.problems()]
        out += [(f"model.{key}", problem) for key, problem in self.model.problems()]
        out += [(f"data.{key}", problem) for key, problem in self.data.problems()]
        return out
