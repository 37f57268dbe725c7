"""Tune types: on each component they apply to, exactly that component's parameters train, one step
changes them, and ``finish`` leaves a plain model (gemfactory.tune.base.TuneType)."""
from __future__ import annotations

import torch

from ..config import StageConfig
from ..errors import ConfigError
from ..registry import TUNE_TYPES
from ..train.tuning import apply_tuning, finish_stage
from ..tune.adapters import lora_layers
from ..tune.base import PREFIX, TuneType, components
from .kit import Failed, Findings
from .modules import subclass_of
from .train_step import model_config, optimizer_step, tiny_model_and_batch

KIT_COMPONENTS = ("llm", "ecg", "connectors")  # what the kit's tiny ECG model has


def check(name: str, findings: Findings) -> None:
    cls = findings.need("contract", _contract, name)
    findings.need("components", _components, cls)
    for comp in (c for c in KIT_COMPONENTS if c in cls.applies_to):
        findings.check(f"train step ({comp})", _train_step, name, cls, comp)


def _contract(name: str) -> tuple:
    cls = subclass_of(TUNE_TYPES.get(name), TuneType)
    if cls.name != name.rpartition(":")[2]:
        raise Failed(f"{cls.__name__}.name is {cls.name!r}, expected its registry name {name.rpartition(':')[2]!r}")
    return cls, f"{cls.__name__} is a TuneType (group {cls.group_name()!r}, trains {cls.trains})"


def _components(cls) -> tuple:
    unknown = [c for c in cls.applies_to if c not in PREFIX]
    if unknown or not cls.applies_to:
        raise Failed(f"applies_to must name some of {', '.join(PREFIX)}, got {cls.applies_to!r}")
    return cls.applies_to, f"applies to {', '.join(cls.applies_to)}"


def _train_step(name: str, cls, comp: str) -> str:
    """Tune ``comp`` this way and the other components the opposite way (frozen around a type that
    trains, full around one that does not), one step, finish."""
    try:
        cls().check(f"stages.kit.tune.{comp}", comp, None)
    except ConfigError as exc:
        return f"refused here: {exc}"  # e.g. qlora without CUDA: a clear refusal is the contract
    tunes = {c: "frozen" if cls.trains else "full" for c in KIT_COMPONENTS}
    tunes[comp] = name
    model, batch, _ = tiny_model_and_batch(model_config())
    stage = StageConfig(name="kit", tune=tunes, **cls.example_stage(comp, components(model)[comp]))
    plain = set(dict(model.named_parameters()))
    resolved = apply_tuning(model, stage)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    inside = [n for n, p in model.named_parameters() if p.requires_grad and n.startswith(PREFIX[comp] + ".")]
    _trains_as_declared(cls, comp, model, inside)
    loss = optimizer_step(model, batch)
    changed = [n for n in inside if not torch.equal(before[n], model.get_parameter(n).detach())]
    adapter = finish_stage(model, resolved)
    if lora_layers(model):
        raise Failed("finish() left adapter layers in the model")
    if set(dict(model.named_parameters())) != plain:
        raise Failed("after finish() the model's parameters are not those of a plain model")
    if cls.trains and not changed:
        raise Failed(f"one step changed none of the {len(inside)} trainable tensors of {comp}")
    kept = f", finish kept an adapter of {len(adapter.state_dict)} tensors" if adapter is not None else ""
    return (f"{len(inside)} trainable tensors in {comp}; one step (loss {loss:.3f}) changed {len(changed)} of "
            f"them{kept}; the model is plain after finish")


def _trains_as_declared(cls, comp: str, model, inside: list[str]) -> None:
    if not cls.trains:
        if inside:
            raise Failed(f"{cls.name} declares trains = False but {inside[0]} of {comp} trains")
        return
    outside = [n for n, p in model.named_parameters() if p.requires_grad and n not in inside]
    if outside:
        raise Failed(f"tuning {comp} also trains {outside[0]} (of another component)")
    if not inside:
        raise Failed(f"tuning {comp} left no parameter to train")
