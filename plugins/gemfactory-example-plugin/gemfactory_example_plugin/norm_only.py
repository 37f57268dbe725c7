"""``norm_only``: a tune type that trains only a component's normalisation layers.

Tuning the LayerNorm / RMSNorm scales and shifts alone is a cheap way to adapt a frozen model (a
few thousand parameters per block). A normalisation layer is found by type: ``nn.LayerNorm``,
``nn.GroupNorm``, or any module whose class name ends in ``Norm`` (``LlamaRMSNorm`` ...).
"""
from __future__ import annotations

from torch import nn

from gemfactory.errors import ConfigError
from gemfactory.tune.base import TuneType


def norm_layers(module: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(n, m) for n, m in module.named_modules()
            if isinstance(m, (nn.LayerNorm, nn.GroupNorm)) or type(m).__name__.endswith("Norm")]


class NormOnly(TuneType):
    """Train the normalisation layers (LayerNorm, RMSNorm, ...) of the component, nothing else."""

    name = "norm_only"
    applies_to = ("llm", "vision", "ecg")  # connectors are mostly plain linear layers

    def apply(self, model, parts, stage) -> None:
        for comp, module in parts.items():
            module.requires_grad_(False)
            found = [m for _, m in norm_layers(module) if any(True for _ in m.parameters())]
            if not found:
                raise ConfigError(f"stages.{stage.name}.tune.{comp}: norm_only found no normalisation layer "
                                  f"with parameters in {comp}")
            for layer in found:
                layer.requires_grad_(True)
