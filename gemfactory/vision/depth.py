"""Which hidden states a tower is read at, and how deep its tiny twin must be to still have them.

A twin is made deep enough for the deepest layer the recipe reads (ViP-LLaVA's ``-11`` needs 11
blocks), so every selected index still names a block output rather than the embeddings; when the
real depth is known, out-of-range indices fail against it.
"""
from __future__ import annotations

from ..errors import ConfigError

MAX_TINY_DEPTH = 48  # deepest tower a tiny twin gets when the real depth is unknown
# HF vision-config keys that only set the size (the twin replaces them)
HF_SIZE_KEYS = frozenset({"hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                          "image_size", "patch_size", "projection_dim"})


def layer_indices(options: dict) -> tuple[str, list]:
    """(options key, hidden-state indices) a tower is read at: ``layers`` or ``select_layer``."""
    if options.get("layers") is not None:
        layers = options["layers"]
        return "layers", list(layers) if isinstance(layers, (list, tuple)) else [layers]
    if "select_layer" in options:
        return "select_layer", [options["select_layer"]] if options["select_layer"] is not None else []
    return "select_layer", []


def needed_depth(options: dict, default_select: int | None) -> tuple[str, list, int]:
    """(options key, indices, blocks the tower needs so that every index names a block output)."""
    key, layers = layer_indices(options)
    if key == "select_layer" and "select_layer" not in options and default_select is not None:
        layers = [default_select]
    ints = [i for i in layers if isinstance(i, int) and not isinstance(i, bool)]
    return key, layers, max((abs(i) for i in ints), default=0)


def tiny_depth(tiny_default: int, need: int, real: int | None, key: str, layers: list) -> int:
    if real is not None:  # out-of-range indices then fail against the real depth
        return max(1, min(max(tiny_default, need), real))
    if need > MAX_TINY_DEPTH:
        shown = layers[0] if key == "select_layer" else layers
        raise ConfigError(
            f"model.vision.options.{key}: {shown!r} needs a tower of at least {need} layers; the tiny "
            f"check builds at most {MAX_TINY_DEPTH} when the real depth is unknown (no local "
            f"model.vision.path), and common towers have 12 to 40"
        )
    return max(tiny_default, need)


def hf_tiny_arch(cls, arch: dict, options: dict, real_folder: str | None, config_cls) -> dict:
    """The twin's arch of a transformers vision tower (CLIP, SigLIP): ``tiny_arch`` with the
    recipe's non-size keys, as deep as the layers read need (capped by the real depth)."""
    key, layers, need = needed_depth(options, cls.default_options.get("select_layer"))
    real = arch.get("num_hidden_layers")
    if real_folder is not None:
        full, _ = cls.resolve(arch, options, real_folder)
        real = config_cls(**full).num_hidden_layers
    kept = {k: v for k, v in arch.items() if k not in HF_SIZE_KEYS}
    depth = tiny_depth(cls.tiny_arch["num_hidden_layers"], need, real, key, layers)
    return {**cls.tiny_arch, **kept, "num_hidden_layers": depth}
