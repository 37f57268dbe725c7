"""The tune-type contract and the component helpers every tune type uses.

A stage resolves one tune type per component of the model (``llm``, ``vision``, ``ecg``,
``connectors``; unset ones get ``DEFAULT_TUNE``). The trainer then, per stage:

1. ``check(where, component, zero_stage)`` for every component, before anything is built: raise a
   ConfigError when this machine or the DeepSpeed setup cannot run it;
2. ``prepare(model, parts, stage)`` per type with its components as ``{component: module}``
   (qlora quantises its LLM here), then ``apply(model, parts, stage)`` once per ``group`` with
   every component of the group: types of one group share one apply (lora and qlora put one
   adapter over all their components). Types that replace layers (``wraps_layers``) are applied
   first, because peft freezes every weight it does not wrap; the others are applied after them;
3. ``finish(model)`` once per group at the end of the stage, before the model is saved; it returns
   an :class:`~gemfactory.tune.adapters.Adapter` to keep beside the checkpoint, or None.
"""
from __future__ import annotations

from typing import ClassVar

from torch import nn

from ..config import COMPONENTS
from ..errors import ConfigError

DEFAULT_TUNE = {"llm": "full", "vision": "frozen", "ecg": "full", "connectors": "full"}
PREFIX = {"llm": "language_model", "vision": "vision_tower", "ecg": "ecg_encoder", "connectors": "connectors"}


class TuneType:
    """Base of every tune type; a subclass sets ``name`` and overrides what it changes."""

    name: ClassVar[str] = ""                     # the registry name, used in error messages
    group: ClassVar[str | None] = None           # types applied in one call; None: the type's own name
    applies_to: ClassVar[tuple[str, ...]] = COMPONENTS
    trains: ClassVar[bool] = True                # False: the component's parameters stay as they are
    wraps_layers: ClassVar[bool] = False         # apply() replaces layers and freezes the rest of the model

    @classmethod
    def group_name(cls) -> str:
        return cls.group or cls.name

    @classmethod
    def example_stage(cls, component: str, module: nn.Module) -> dict:
        """StageConfig fields beyond ``tune`` that a stage tuning ``component`` (``module``) this way
        needs (the conformance kit builds its stage from them; e.g. partial's ``partial`` section)."""
        return {}

    def check(self, where: str, component: str, zero_stage: int | None) -> None:
        """Raise a ConfigError naming ``where`` when ``component`` cannot be tuned this way here."""
        if component not in self.applies_to:
            raise ConfigError(f"{where}: {self.name} is for {', '.join(self.applies_to)} only")

    def prepare(self, model, parts: dict[str, nn.Module], stage) -> None:
        """Change the components before the group's apply (nothing by default)."""

    def apply(self, model, parts: dict[str, nn.Module], stage) -> None:
        """Set which parameters of ``parts`` train (requires_grad)."""
        raise NotImplementedError(f"tune type {self.name!r} does not implement apply()")

    def finish(self, model):
        """End of the stage: return an Adapter to save beside the model, or None."""
        return None


def components(model) -> dict[str, nn.Module]:
    """The model's components by tune key (those it has)."""
    parts = {key: getattr(model, attr, None) for key, attr in PREFIX.items()}
    return {k: v for k, v in parts.items() if v is not None}


def component_of(param_name: str) -> str:
    """The component a GemForCausalLM parameter name belongs to."""
    head = param_name.split(".", 1)[0]
    return {attr: key for key, attr in PREFIX.items()}.get(head, "llm")


def main_layer_stack(module: nn.Module) -> tuple[str, nn.ModuleList] | None:
    """The component's block list: the ModuleList holding the most parameters."""
    best, best_size = None, 0
    for name, sub in module.named_modules():
        if isinstance(sub, nn.ModuleList) and len(sub) > 0:
            size = sum(p.numel() for p in sub.parameters())
            if size > best_size:
                best, best_size = (name, sub), size
    return best


def linear_names(module: nn.Module) -> list[str]:
    """Names of the nn.Linear layers an adapter can wrap (not the projections inside
    nn.MultiheadAttention, whose forward reads their weights directly)."""
    skip = {f"{n}.{c}" if n else c for n, m in module.named_modules() if isinstance(m, nn.MultiheadAttention)
            for c, _ in m.named_children()}
    return [n for n, m in module.named_modules() if isinstance(m, nn.Linear) and n and n not in skip]
