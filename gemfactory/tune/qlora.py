"""``qlora``: LoRA over the LLM's decoder layers quantised to 4 bits (bitsandbytes NF4, CUDA)."""
from __future__ import annotations

import importlib.util

import torch
from torch import nn

from ..errors import ConfigError
from ..registry import TUNE_TYPES
from .base import linear_names, main_layer_stack
from .lora import Lora


def qlora_available() -> str | None:
    """None when QLoRA can run here, else the reason it cannot."""
    missing = []
    if importlib.util.find_spec("bitsandbytes") is None:
        missing.append("bitsandbytes is not installed")
    if not torch.cuda.is_available():
        missing.append("no CUDA GPU is visible")
    return "; ".join(missing) or None


@TUNE_TYPES.register("qlora")
class QLora(Lora):
    """LoRA over a 4-bit (NF4) LLM: needs bitsandbytes and a CUDA GPU; shares the stage's adapter."""

    name = "qlora"
    applies_to = ("llm",)

    def check(self, where: str, component: str, zero_stage: int | None) -> None:
        why = qlora_available()
        if why:
            raise ConfigError(f"{where}: qlora needs bitsandbytes and a CUDA GPU ({why}); use lora instead")
        if component not in self.applies_to:
            raise ConfigError(f"{where}: qlora is for the llm only; use lora for towers, encoders and connectors")
        super().check(where, component, zero_stage)

    def prepare(self, model, parts, stage) -> None:  # pragma: no cover - needs CUDA + bitsandbytes
        for module in parts.values():
            _quantize_4bit(module)


def _quantize_4bit(llm: nn.Module) -> None:  # pragma: no cover - needs CUDA + bitsandbytes
    """Replace the LLM's decoder linear layers by bitsandbytes 4-bit (NF4) layers on the GPU."""
    import bitsandbytes as bnb

    stack_name = main_layer_stack(llm)[0]
    for name in linear_names(llm):
        if not name.startswith(stack_name + "."):
            continue
        parent_name, _, child = name.rpartition(".")
        parent, old = llm.get_submodule(parent_name), llm.get_submodule(name)
        new = bnb.nn.Linear4bit(old.in_features, old.out_features, bias=old.bias is not None,
                                compute_dtype=torch.bfloat16, quant_type="nf4")
        new.weight = bnb.nn.Params4bit(old.weight.data.cpu(), requires_grad=False, quant_type="nf4")
        if old.bias is not None:
            new.bias = nn.Parameter(old.bias.data, requires_grad=False)
        setattr(parent, child, new.cuda())
