"""Which parameters a stage trains: one tune type per component.

``frozen`` and ``full`` switch a component's parameters off or on. ``lora`` injects peft LoRA
layers into the component in place (GemForCausalLM keeps its structure: ``language_model`` stays
the HF model, with LoRA layers inside its linear layers); one adapter covers every LoRA component
of the stage. ``qlora`` is LoRA over a 4-bit base and needs bitsandbytes and a CUDA GPU.
``partial`` trains the last blocks of a component and/or named submodules (``stages.<n>.partial``).

At the end of a stage :func:`gemfactory.model.adapters.finish_tuning` takes the adapter out (config +
weights, to be saved on its own), merges it into the base weights and removes the LoRA layers, so the
checkpoint is a plain GemForCausalLM and the next stage starts from the merged weights.
"""
from __future__ import annotations

import importlib.util
import logging
import re

import torch
from torch import nn

from ..config import StageConfig
from ..errors import ConfigError
from ..model.adapters import ADAPTER_NAME, lora_layers

log = logging.getLogger(__name__)

DEFAULT_TUNE = {"llm": "full", "vision": "frozen", "ecg": "full", "connectors": "full"}
PREFIX = {"llm": "language_model", "vision": "vision_tower", "ecg": "ecg_encoder", "connectors": "connectors"}


def components(model) -> dict[str, nn.Module]:
    parts = {"llm": model.language_model, "vision": model.vision_tower,
             "ecg": model.ecg_encoder, "connectors": model.connectors}
    return {k: v for k, v in parts.items() if v is not None}


def component_of(param_name: str) -> str:
    head = param_name.split(".", 1)[0]
    return {"language_model": "llm", "vision_tower": "vision", "ecg_encoder": "ecg",
            "connectors": "connectors"}.get(head, "llm")


def qlora_available() -> str | None:
    """None when QLoRA can run here, else the reason it cannot."""
    missing = []
    if importlib.util.find_spec("bitsandbytes") is None:
        missing.append("bitsandbytes is not installed")
    if not torch.cuda.is_available():
        missing.append("no CUDA GPU is visible")
    return "; ".join(missing) or None


def check_tuning(recipe, zero_stage: int | None = None) -> None:
    """Fail before any model is built or trained when a stage asks for what this machine or the
    DeepSpeed setup cannot do."""
    if zero_stage == 3 and recipe.data.feature_cache:
        raise ConfigError("data.feature_cache: cannot be used with ZeRO-3 (a rank that finds its features on disk "
                          "would skip the tower weights the other ranks gather); use training.deepspeed=zero2")
    for stage in recipe.stages:
        for comp, tune in stage.tune.items():
            where = f"stages.{stage.name}.tune.{comp}"
            if tune == "qlora":
                _check_qlora(where, comp)
            if zero_stage == 3 and tune in ("lora", "qlora"):
                raise ConfigError(f"{where}: {tune} cannot be merged into weights that ZeRO-3 shards across "
                                  "devices; use training.deepspeed=zero2 (or full/partial tuning)")


def _check_qlora(where: str, comp: str) -> None:
    why = qlora_available()
    if why:
        raise ConfigError(f"{where}: qlora needs bitsandbytes and a CUDA GPU ({why}); use lora instead")
    if comp != "llm":
        raise ConfigError(f"{where}: qlora is for the llm only; use lora for towers, encoders and connectors")


def apply_tuning(model, stage: StageConfig, zero_stage: int | None = None) -> dict[str, str]:
    """Set requires_grad per component (injecting LoRA where asked); return each component's tune type.
    A component asked to train that has no parameters (identity connectors) is an error under ZeRO-3,
    which has nothing to shard there, and a warning otherwise."""
    for key, problem in stage.problems():  # recipes were checked on load; a StageConfig made in code too
        raise ConfigError(f"stage config: stages.{stage.name}.{key}: {problem}")
    if lora_layers(model):
        raise ConfigError(f"stages.{stage.name}: the model still holds LoRA layers of an earlier stage; "
                          "merge them first (finish_tuning)")
    parts = components(model)
    for name in stage.tune:
        if name not in parts:
            raise ConfigError(f"stages.{stage.name}.tune.{name}: the model has no {name} component")
    resolved = {name: stage.tune.get(name, DEFAULT_TUNE[name]) for name in parts}
    for name, tune in resolved.items():
        if tune == "qlora":
            _check_qlora(f"stages.{stage.name}.tune.{name}", name)
        if name in stage.tune and tune != "frozen" and not any(True for _ in parts[name].parameters()):
            message = (f"stages.{stage.name}.tune.{name}: {tune}, but the {name} component has no "
                       "parameters to train")
            if zero_stage == 3:
                raise ConfigError(f"{message}; ZeRO-3 has nothing to shard there: set it to frozen")
            log.warning("%s; it stays as it is", message)
    for name, module in parts.items():
        module.requires_grad_(resolved[name] == "full")
    for name, tune in resolved.items():
        if tune == "partial":
            _apply_partial(parts[name], name, stage)
    lora_parts = [n for n, t in resolved.items() if t in ("lora", "qlora")]
    if lora_parts:
        if resolved.get("llm") == "qlora":
            _quantize_4bit(model.language_model, stage)
        _inject_lora(model, lora_parts, stage)
        for name, module in parts.items():  # peft freezes every non-LoRA weight; restore the others
            if resolved[name] == "full":
                module.requires_grad_(True)
            elif resolved[name] == "partial":
                _apply_partial(module, name, stage)
    if not any(p.requires_grad for p in model.parameters()):
        raise ConfigError(f"stages.{stage.name}.tune: every component is frozen; nothing would train")
    return resolved


# partial -----------------------------------------------------------------------------------------
def main_layer_stack(module: nn.Module) -> tuple[str, nn.ModuleList] | None:
    """The component's block list: the ModuleList holding the most parameters."""
    best, best_size = None, 0
    for name, sub in module.named_modules():
        if isinstance(sub, nn.ModuleList) and len(sub) > 0:
            size = sum(p.numel() for p in sub.parameters())
            if size > best_size:
                best, best_size = (name, sub), size
    return best


def _apply_partial(module: nn.Module, comp: str, stage: StageConfig) -> None:
    spec = stage.partial[comp]
    where = f"stages.{stage.name}.partial.{comp}"
    n = spec.last_n_layers
    if n is not None:
        found = main_layer_stack(module)
        if found is None:
            raise ConfigError(f"{where}.last_n_layers: the {comp} component has no stack of layers")
        stack_name, stack = found
        if n > len(stack):
            raise ConfigError(f"{where}.last_n_layers: {n} is more than the {len(stack)} layers of "
                              f"{comp} ({stack_name})")
        for block in list(stack)[-n:]:
            block.requires_grad_(True)
    params = dict(module.named_parameters())
    for i, name in enumerate(spec.modules or []):
        try:
            module.get_submodule(name).requires_grad_(True)
            continue
        except AttributeError:
            pass
        if name in params:
            params[name].requires_grad_(True)
            continue
        tops = sorted({n.split(".")[0] for n, _ in module.named_children()})
        raise ConfigError(f"{where}.modules[{i}]: {name!r} is neither a module nor a parameter of {comp} "
                          f"(top-level modules: {', '.join(tops)})")


# LoRA --------------------------------------------------------------------------------------------
def _linear_names(module: nn.Module) -> list[str]:
    """Names of the nn.Linear layers LoRA can wrap (not the projections inside nn.MultiheadAttention,
    whose forward reads their weights directly)."""
    skip = {f"{n}.{c}" if n else c for n, m in module.named_modules() if isinstance(m, nn.MultiheadAttention)
            for c, _ in m.named_children()}
    return [n for n, m in module.named_modules() if isinstance(m, nn.Linear) and n and n not in skip]


def llm_target_modules(llm: nn.Module) -> list[str]:
    """Leaf names of the LLM's attention and MLP linear layers (q_proj ... down_proj; phi's dense,
    fc1, fc2): every nn.Linear inside its decoder blocks, found by type, not by family."""
    stack = main_layer_stack(llm)
    if stack is None:
        raise ConfigError("model.llm: no decoder layer stack found for LoRA; set stages.<name>.lora.target_modules")
    stack_name = stack[0]
    leaves = {n.rsplit(".", 1)[-1] for n in _linear_names(llm) if n.startswith(stack_name + ".")}
    return sorted(leaves)


def _target_regex(model, comps: list[str], stage: StageConfig) -> str:
    """One regex over GemForCausalLM's module names selecting every LoRA target of the stage."""
    parts = components(model)
    targets = stage.lora.target_modules or {}
    for comp in targets:
        if comp not in comps:
            raise ConfigError(f"stages.{stage.name}.lora.target_modules.{comp}: {comp} is not tuned with lora")
    alternatives = []
    for comp in comps:
        prefix = re.escape(PREFIX[comp])
        names = targets.get(comp)
        if comp == "llm" and names is None:
            names = llm_target_modules(parts[comp])
            alternatives.append(rf"{prefix}\.(?:.*\.)?(?:{'|'.join(map(re.escape, names))})")
            continue
        if names is None:
            names = _linear_names(parts[comp])
            if not names:
                raise ConfigError(f"stages.{stage.name}.tune.{comp}: lora found no nn.Linear layer in {comp}")
            alternatives.append(rf"{prefix}\.(?:{'|'.join(map(re.escape, names))})")
            continue
        # user names: a module name relative to the component, or the last part(s) of one
        known = [n for n, _ in parts[comp].named_modules() if n]
        for name in names:
            if not any(k == name or k.endswith("." + name) for k in known):
                raise ConfigError(f"stages.{stage.name}.lora.target_modules: {name!r} names no module of {comp}")
        alternatives.append(rf"{prefix}\.(?:.*\.)?(?:{'|'.join(map(re.escape, names))})")
    return "^(?:" + "|".join(alternatives) + ")$"


def _inject_lora(model, comps: list[str], stage: StageConfig) -> None:
    from peft import LoraConfig, inject_adapter_in_model

    config = LoraConfig(r=stage.lora.r, lora_alpha=stage.lora.alpha, lora_dropout=stage.lora.dropout,
                        target_modules=_target_regex(model, comps, stage), bias="none")
    try:
        inject_adapter_in_model(config, model, adapter_name=ADAPTER_NAME)
    except ValueError as exc:  # peft: target not found / unsupported layer type
        raise ConfigError(f"stages.{stage.name}.lora: {exc}") from None
    model._gem_lora_components = list(comps)


def _quantize_4bit(llm: nn.Module, stage: StageConfig) -> None:  # pragma: no cover - needs CUDA + bnb
    """Replace the LLM's decoder linear layers by bitsandbytes 4-bit (NF4) layers on the GPU."""
    import bitsandbytes as bnb

    stack_name = main_layer_stack(llm)[0]
    for name in _linear_names(llm):
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


def parameter_counts(model) -> dict[str, tuple[int, int]]:
    """component -> (trainable, total)."""
    out = {}
    for name, module in components(model).items():
        params = list(module.parameters())
        out[name] = (sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params))
    return out
