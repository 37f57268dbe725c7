"""``lora``: peft LoRA layers injected into the component in place; one adapter per stage.

GemForCausalLM keeps its structure (``language_model`` stays the HF model, with LoRA layers inside
its linear layers). At the end of the stage the adapter is taken out (config + weights, saved on
its own), merged into the base weights and the LoRA layers removed, so the checkpoint is a plain
GemForCausalLM and the next stage starts from the merged weights.
"""
from __future__ import annotations

import re

from torch import nn

from ..errors import ConfigError
from ..registry import TUNE_TYPES
from .adapters import ADAPTER_NAME, finish_tuning
from .base import PREFIX, TuneType, linear_names, main_layer_stack


@TUNE_TYPES.register("lora")
class Lora(TuneType):
    """Low-rank updates of the component's linear layers (``stages.<n>.lora``), merged at the end."""

    name = "lora"
    group = "lora"
    wraps_layers = True

    def check(self, where: str, component: str, zero_stage: int | None) -> None:
        super().check(where, component, zero_stage)
        if zero_stage == 3:
            raise ConfigError(f"{where}: {self.name} cannot be merged into weights that ZeRO-3 shards across "
                              "devices; use training.deepspeed=zero2 (or full/partial tuning)")

    def apply(self, model, parts, stage) -> None:
        inject_lora(model, parts, stage)

    def finish(self, model):
        return finish_tuning(model)


def llm_target_modules(llm: nn.Module) -> list[str]:
    """Leaf names of the LLM's attention and MLP linear layers (q_proj ... down_proj; phi's dense,
    fc1, fc2): every nn.Linear inside its decoder blocks, found by type, not by family."""
    stack = main_layer_stack(llm)
    if stack is None:
        raise ConfigError("model.llm: no decoder layer stack found for LoRA; set stages.<name>.lora.target_modules")
    stack_name = stack[0]
    return sorted({n.rsplit(".", 1)[-1] for n in linear_names(llm) if n.startswith(stack_name + ".")})


def _alternative(comp: str, module: nn.Module, names: list[str] | None, stage) -> str:
    """The regex alternative selecting ``comp``'s LoRA targets among GemForCausalLM's module names."""
    prefix = re.escape(PREFIX[comp])
    if comp == "llm" and names is None:
        names = llm_target_modules(module)
    elif names is None:
        names = linear_names(module)
        if not names:
            raise ConfigError(f"stages.{stage.name}.tune.{comp}: lora found no nn.Linear layer in {comp}")
        return rf"{prefix}\.(?:{'|'.join(map(re.escape, names))})"
    else:  # user names: a module name relative to the component, or the last part(s) of one
        known = [n for n, _ in module.named_modules() if n]
        for name in names:
            if not any(k == name or k.endswith("." + name) for k in known):
                raise ConfigError(f"stages.{stage.name}.lora.target_modules: {name!r} names no module of {comp}")
    return rf"{prefix}\.(?:.*\.)?(?:{'|'.join(map(re.escape, names))})"


def target_regex(parts: dict[str, nn.Module], stage) -> str:
    """One regex over GemForCausalLM's module names selecting every LoRA target of the stage."""
    targets = stage.lora.target_modules or {}
    for comp in targets:
        if comp not in parts:
            raise ConfigError(f"stages.{stage.name}.lora.target_modules.{comp}: {comp} is not tuned with lora")
    alternatives = [_alternative(comp, module, targets.get(comp), stage) for comp, module in parts.items()]
    return "^(?:" + "|".join(alternatives) + ")$"


def inject_lora(model, parts: dict[str, nn.Module], stage) -> None:
    from peft import LoraConfig, inject_adapter_in_model

    config = LoraConfig(r=stage.lora.r, lora_alpha=stage.lora.alpha, lora_dropout=stage.lora.dropout,
                        target_modules=target_regex(parts, stage), bias="none")
    try:
        inject_adapter_in_model(config, model, adapter_name=ADAPTER_NAME)
    except ValueError as exc:  # peft: target not found / unsupported layer type
        raise ConfigError(f"stages.{stage.name}.lora: {exc}") from None
    model._gem_lora_components = list(parts)
