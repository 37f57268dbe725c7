"""Which parameters a stage trains: one tune type per component."""
from __future__ import annotations

from torch import nn

from ..config import StageConfig
from ..errors import ConfigError

DEFAULT_TUNE = {"llm": "full", "vision": "frozen", "ecg": "full", "connectors": "full"}


def components(model) -> dict[str, nn.Module]:
    parts = {"llm": model.language_model, "vision": model.vision_tower,
             "ecg": model.ecg_encoder, "connectors": model.connectors}
    return {k: v for k, v in parts.items() if v is not None}


def component_of(param_name: str) -> str:
    head = param_name.split(".", 1)[0]
    return {"language_model": "llm", "vision_tower": "vision", "ecg_encoder": "ecg",
            "connectors": "connectors"}.get(head, "llm")


def apply_tuning(model, stage: StageConfig) -> dict[str, str]:
    """Set requires_grad per component; return the resolved tune type of each component."""
    resolved = {}
    parts = components(model)
    for name in stage.tune:
        if name not in parts:
            raise ConfigError(f"stages.{stage.name}.tune.{name}: the model has no {name} component")
    for name, module in parts.items():
        tune = stage.tune.get(name, DEFAULT_TUNE[name])
        if tune in ("lora", "qlora", "partial"):
            raise ConfigError(
                f"stages.{stage.name}.tune.{name}: {tune!r} is not available yet; use frozen or full"
            )
        module.requires_grad_(tune == "full")
        resolved[name] = tune
    if not any(p.requires_grad for p in model.parameters()):
        raise ConfigError(f"stages.{stage.name}.tune: every component is frozen; nothing would train")
    return resolved


def parameter_counts(model) -> dict[str, tuple[int, int]]:
    """component -> (trainable, total)."""
    out = {}
    for name, module in components(model).items():
        params = list(module.parameters())
        out[name] = (sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params))
    return out
