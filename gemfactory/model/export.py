"""``gemfactory export``: a checkpoint -> a standalone HF folder (weights, tokenizer, config).

Training already merges LoRA into the saved weights and keeps the adapter beside them
(``model/adapter/``, marked ``merged_into_base: true``), so a plain export just rewrites the
model. ``--merge`` applies an adapter whose weights are *not* in the base yet: the checkpoint's
own ``adapter/`` when it is marked unmerged, or any adapter folder given with ``--adapter``
(an adapter shipped alone, applied onto the base checkpoint it was trained from). An adapter
already merged is never applied twice.
"""
from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

from ..errors import CheckpointError, ConfigError
from ..tune.adapters import ADAPTER_INFO, load_adapter
from .checkpoint import resolve_model_dir, save_checkpoint

log = logging.getLogger(__name__)
RECIPE_FILE = "gemfactory_recipe.yaml"


def adapter_merged(folder: Path) -> bool | None:
    """True / False from the adapter's gemfactory marker; None when the folder has no marker."""
    info = folder / ADAPTER_INFO
    if not info.is_file():
        return None
    try:
        return bool(json.loads(info.read_text()).get("merged_into_base"))
    except (json.JSONDecodeError, AttributeError):
        raise CheckpointError(f"{info}: not valid JSON") from None


FORMATS = ("gemfactory", "llava-hf")


def export_checkpoint(checkpoint, out, merge: bool = False, adapter=None, fmt: str = "gemfactory") -> tuple[Path, str]:
    """Write ``out``; return it and a line saying what happened to the adapter (or the format)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if fmt not in FORMATS:
        raise ConfigError(f"export: --format {fmt!r} is not one of {', '.join(FORMATS)}")
    src = resolve_model_dir(checkpoint)
    out = Path(out)
    if out.resolve() == src.resolve():
        raise ConfigError(f"export: OUT {out} is the checkpoint itself; choose another folder")
    if fmt == "llava-hf":
        return _export_llava_hf(src, out, merge or adapter is not None)
    explicit = adapter is not None
    adapter_dir = Path(adapter) if explicit else src / "adapter"
    if explicit and not merge:
        raise ConfigError("export: --adapter is applied with --merge")
    if explicit and not adapter_dir.is_dir():
        raise CheckpointError(f"adapter folder not found: {adapter_dir}")
    merged = adapter_merged(adapter_dir) if adapter_dir.is_dir() else None
    if merge and not adapter_dir.is_dir():
        raise CheckpointError(f"export --merge: {src} has no adapter/ folder; name one with --adapter DIR")
    if not merge and adapter_dir.is_dir() and merged is False:
        raise ConfigError(f"export: {adapter_dir} holds an adapter not merged into the weights yet; "
                          "pass --merge to fold it in")

    from safetensors import SafetensorError

    try:
        model = AutoModelForCausalLM.from_pretrained(src)
        tokenizer = AutoTokenizer.from_pretrained(src)
    except (OSError, ValueError, KeyError, SafetensorError) as exc:  # missing, malformed or truncated files
        raise CheckpointError(f"cannot load checkpoint {src}: {type(exc).__name__}: {exc}") from None
    if merge and (explicit or merged is False):
        load_adapter(model, adapter_dir)
        note = f"adapter {adapter_dir} merged into the weights"
    elif merge and merged is None:
        raise ConfigError(f"export --merge: {adapter_dir} has no gemfactory marker, so it is unknown whether "
                          "its weights are already in the checkpoint; pass it explicitly with --adapter")
    elif adapter_dir.is_dir():
        note = "the checkpoint's adapter is already merged into its weights"
    else:
        note = "no adapter"

    recipe = src / RECIPE_FILE

    def copy_recipe(folder: Path) -> None:
        if recipe.is_file():
            shutil.copyfile(recipe, folder / RECIPE_FILE)

    save_checkpoint(model, tokenizer, out, extra=copy_recipe)
    return out, note


def _export_llava_hf(src: Path, out: Path, merging: bool) -> tuple[Path, str]:
    from .export_llava_hf import export_llava_hf

    if merging:
        raise ConfigError("export --format llava-hf: merge the adapter with a plain `export --merge` first, "
                          "then export that folder")
    if adapter_merged(src / "adapter") is False:
        raise ConfigError(f"export --format llava-hf: {src / 'adapter'} holds an adapter not merged into the "
                          "weights yet; run `export --merge` first")
    return export_llava_hf(src, out)
