"""Which parameters a stage trains: one registered tune type per component (:mod:`gemfactory.tune`).

``frozen`` and ``full`` switch a component's parameters off or on, ``partial`` trains some of its
blocks, ``lora`` / ``qlora`` inject one peft adapter over their components; a plugin adds its own
through the ``gemfactory.tune_types`` entry points. This module resolves each component's type,
runs the checks before anything is built, applies the types in their order and finishes them at
the end of the stage.
"""
from __future__ import annotations

import logging

from ..config import StageConfig
from ..errors import ConfigError
from ..registry import TUNE_TYPES
from ..tune.adapters import lora_layers
from ..tune.base import DEFAULT_TUNE, TuneType, component_of, components  # noqa: F401 (re-exported)

log = logging.getLogger(__name__)


def tune_type(name: str) -> TuneType:
    return TUNE_TYPES.get(name)()


def check_tuning(recipe, zero_stage: int | None = None) -> None:
    """Fail before any model is built or trained when a stage asks for what this machine or the
    DeepSpeed setup cannot do."""
    if zero_stage == 3 and recipe.data.feature_cache:
        raise ConfigError("data.feature_cache: cannot be used with ZeRO-3 (a rank that finds its features on disk "
                          "would skip the tower weights the other ranks gather); use training.deepspeed=zero2")
    for stage in recipe.stages:
        for comp, tune in stage.tune.items():
            tune_type(tune).check(f"stages.{stage.name}.tune.{comp}", comp, zero_stage)


def resolve(model, stage: StageConfig) -> dict[str, str]:
    """Each component of the model -> its tune type name (the stage's, else DEFAULT_TUNE)."""
    parts = components(model)
    for name in stage.tune:
        if name not in parts:
            raise ConfigError(f"stages.{stage.name}.tune.{name}: the model has no {name} component")
    return {name: stage.tune.get(name, DEFAULT_TUNE[name]) for name in parts}


def apply_tuning(model, stage: StageConfig, zero_stage: int | None = None) -> dict[str, str]:
    """Set requires_grad per component (injecting LoRA where asked); return each component's tune type.
    A component asked to train that has no parameters (identity connectors) is an error under ZeRO-3,
    which has nothing to shard there, and a warning otherwise."""
    for key, problem in stage.problems():  # recipes were checked on load; a StageConfig made in code too
        raise ConfigError(f"stage config: stages.{stage.name}.{key}: {problem}")
    if lora_layers(model):
        raise ConfigError(f"stages.{stage.name}: the model still holds LoRA layers of an earlier stage; "
                          "merge them first (finish_tuning)")
    resolved, parts = resolve(model, stage), components(model)
    types = {name: tune_type(tune) for name, tune in resolved.items()}
    for name, kind in types.items():
        where = f"stages.{stage.name}.tune.{name}"
        kind.check(where, name, zero_stage)
        if name in stage.tune and kind.trains and not any(True for _ in parts[name].parameters()):
            message = f"{where}: {kind.name}, but the {name} component has no parameters to train"
            if zero_stage == 3:
                raise ConfigError(f"{message}; ZeRO-3 has nothing to shard there: set it to frozen")
            log.warning("%s; it stays as it is", message)
    for kind, comps in _by_type(types):
        kind.prepare(model, {c: parts[c] for c in comps}, stage)
    for kind, comps in sorted(_by_group(types), key=lambda group: not group[0].wraps_layers):
        kind.apply(model, {c: parts[c] for c in comps}, stage)
    if not any(p.requires_grad for p in model.parameters()):
        raise ConfigError(f"stages.{stage.name}.tune: every component is frozen; nothing would train")
    return resolved


def finish_stage(model, tunes: dict[str, str]):
    """End of a stage: each group of tune types finishes (LoRA merges into the base weights);
    the Adapter to save beside the model, or None."""
    adapters = [kind.finish(model) for kind, _ in _by_group({c: tune_type(t) for c, t in tunes.items()})]
    kept = [a for a in adapters if a is not None]
    return kept[0] if kept else None


def _by_type(types: dict[str, TuneType]) -> list[tuple[TuneType, list[str]]]:
    return _grouped(types, lambda kind: kind.name)


def _by_group(types: dict[str, TuneType]) -> list[tuple[TuneType, list[str]]]:
    return _grouped(types, lambda kind: kind.group_name())


def _grouped(types: dict[str, TuneType], key) -> list[tuple[TuneType, list[str]]]:
    """(the first type with that key, its components) per key, in component order."""
    out: dict[str, tuple[TuneType, list[str]]] = {}
    for comp, kind in types.items():
        out.setdefault(key(kind), (kind, []))[1].append(comp)
    return list(out.values())


def parameter_counts(model) -> dict[str, tuple[int, int]]:
    """component -> (trainable, total)."""
    out = {}
    for name, module in components(model).items():
        params = list(module.parameters())
        out[name] = (sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params))
    return out
