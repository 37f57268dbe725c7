"""LoRA adapters of a GemForCausalLM: taken out of the model, saved, loaded, merged into the base
weights. The ``lora`` tune type injects them (:mod:`gemfactory.tune.lora`); export and loading use
them here."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..errors import CheckpointError

ADAPTER_NAME = "default"
ADAPTER_INFO = "gemfactory_adapter.json"  # beside adapter_config.json: components, merged or not


def lora_layers(model) -> list[tuple[str, nn.Module]]:
    from peft.tuners.tuners_utils import BaseTunerLayer

    return [(n, m) for n, m in model.named_modules() if isinstance(m, BaseTunerLayer)]


@dataclass
class Adapter:
    """A stage's LoRA adapter taken out of the model: peft config + weights (peft's key names)."""
    config: object  # peft.LoraConfig
    state_dict: dict
    components: list

    def save(self, folder: str | Path, merged: bool) -> Path:
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.config.save_pretrained(folder)
        save_file({k: v.contiguous() for k, v in self.state_dict.items()},
                  str(folder / "adapter_model.safetensors"), metadata={"format": "pt"})
        info = {"components": self.components, "merged_into_base": merged,
                "note": "LoRA over GemForCausalLM; module names are relative to it"}
        (folder / ADAPTER_INFO).write_text(json.dumps(info, indent=1) + "\n")
        return folder


def extract_adapter(model) -> Adapter | None:
    from peft import get_peft_model_state_dict

    if not lora_layers(model):
        return None
    sd = get_peft_model_state_dict(model, adapter_name=ADAPTER_NAME, save_embedding_layers=False)
    state = {k: v.detach().to("cpu").clone() for k, v in sd.items()}
    config = model.peft_config[ADAPTER_NAME]
    return Adapter(config, state, list(getattr(model, "_gem_lora_components", [])))


def merge_lora(model, merge: bool = True) -> None:
    """Fold every LoRA layer into its base layer (``merge=False``: drop it) and put the base layer
    back in its place, so the model is a plain GemForCausalLM again."""
    for name, layer in lora_layers(model):
        if not hasattr(layer, "get_base_layer"):
            continue
        base = layer.get_base_layer()
        if type(base).__name__ == "Linear4bit":  # qlora: back to a float layer, then add the delta
            base = _dequantized(base, layer.get_delta_weight(ADAPTER_NAME) if merge else None)
        elif merge:
            layer.merge(safe_merge=True)
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, base)
    for attr in ("peft_config", "_gem_lora_components"):
        if attr in model.__dict__:
            delattr(model, attr)


def _dequantized(layer, delta) -> nn.Linear:  # pragma: no cover - needs CUDA + bitsandbytes
    import bitsandbytes as bnb

    weight = bnb.functional.dequantize_4bit(layer.weight.data, layer.weight.quant_state).float()
    if delta is not None:
        weight = weight + delta.float()
    out = nn.Linear(layer.in_features, layer.out_features, bias=layer.bias is not None,
                    device=weight.device, dtype=torch.float32)
    with torch.no_grad():
        out.weight.copy_(weight)
        if layer.bias is not None:
            out.bias.copy_(layer.bias.float())
    return out


def finish_tuning(model) -> Adapter | None:
    """End of a stage: take the adapter out (if any), merge it into the base weights, unload it."""
    adapter = extract_adapter(model)
    if adapter is not None:
        merge_lora(model)
    return adapter


def load_adapter(model, folder: str | Path) -> None:
    """Inject the LoRA adapter saved in ``folder`` into a GemForCausalLM, merge it, unload it."""
    from peft import LoraConfig, inject_adapter_in_model, set_peft_model_state_dict
    from safetensors.torch import load_file

    folder = Path(folder)
    weights = folder / "adapter_model.safetensors"
    if not (folder / "adapter_config.json").is_file() or not weights.is_file():
        raise CheckpointError(f"{folder}: not an adapter folder (adapter_config.json + adapter_model.safetensors)")
    config = LoraConfig.from_pretrained(str(folder))
    inject_adapter_in_model(config, model, adapter_name=ADAPTER_NAME)
    result = set_peft_model_state_dict(model, load_file(str(weights)), adapter_name=ADAPTER_NAME)
    missing = [k for k in result.missing_keys if "lora_" in k]
    if missing or result.unexpected_keys:
        merge_lora(model, merge=False)
        raise CheckpointError(f"{folder}: the adapter does not fit this model "
                              f"(missing {missing[:3]}, unexpected {list(result.unexpected_keys)[:3]})")
    merge_lora(model)
