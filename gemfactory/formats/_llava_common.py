"""What the original LLaVA code base (LLaVA-1.5, ViP-LLaVA, GEM) writes into config.json, read once.

Field names and defaults follow ``llava/model/llava_arch.py`` and ``multimodal_encoder/clip_encoder.py``
of haotian-liu/LLaVA: ``mm_vision_select_layer``, ``mm_vision_select_feature`` (default ``patch``),
``mm_projector_type`` (default ``linear``), ``mm_patch_merge_type`` (default ``flat``),
``image_aspect_ratio``, ``mm_use_im_start_end``, ``mm_use_im_patch_token``.
"""
from __future__ import annotations

from pathlib import Path

from ..registry import TEMPLATES
from .base import aspect_from_seed, read_json, refuse, vision_entry

#: model_type of LLaVA's language-model classes -> the transformers model_type of their LLM
LLM_TYPES = {"llava": "llama", "llava_llama": "llama", "llava_qwen": "qwen2", "llama": "llama"}


def llm_type(config: dict) -> str:
    kind = config.get("model_type")
    if kind not in LLM_TYPES:
        refuse("model_type", kind, f"imported LLaVA-style language models are {sorted(LLM_TYPES)}")
    return LLM_TYPES[kind]


def check_llava_fields(config: dict) -> None:
    """Refuse every LLaVA option gemfactory has no exact equivalent for."""
    merge = config.get("mm_patch_merge_type", "flat")
    if merge != "flat":
        refuse("mm_patch_merge_type", merge, "only 'flat' (LLaVA-1.5) imports; spatial / unpad merging is "
               "LLaVA-NeXT's any-resolution layout")
    for flag in ("mm_use_im_start_end", "mm_use_im_patch_token"):
        if config.get(flag):
            refuse(flag, config[flag], "gemfactory has no image start/end or patch tokens")
    if config.get("s2"):
        refuse("s2", config["s2"], "multi-scale (S2) CLIP towers are not imported")


def tower_folder(config: dict, options: dict, default: str | None = None) -> str:
    """The CLIP folder (local, or a hub id) the seed read its tower config from."""
    name = options.get("vision_tower") or default or config.get("mm_vision_tower")
    if not name:
        refuse("mm_vision_tower", None, "no vision tower named; pass --vision-tower FOLDER")
    return name


def clip_vision(config: dict, folder: Path, layers=None) -> dict:
    cfg = read_json(folder / "config.json", "the vision tower's config")
    processor = folder / "preprocessor_config.json"
    stats = read_json(processor, "") if processor.is_file() else {}
    feature = config.get("mm_vision_select_feature", "patch")
    if feature not in ("patch", "cls_patch"):
        refuse("mm_vision_select_feature", feature, "LLaVA's feature choices are patch and cls_patch")
    return vision_entry(cfg.get("model_type", "clip_vision_model"), cfg.get("vision_config", cfg),
                        select_layer=config.get("mm_vision_select_layer", -1), select_feature=feature,
                        layers=layers, image_aspect=aspect_from_seed(config.get("image_aspect_ratio"),
                                                                     cfg.get("model_type", "clip_vision_model")),
                        processor=stats)


def llava_template() -> str:
    """LLaVA-1.5 / GEM / ViP-LLaVA train with ``conv_llava_v1``: gemfactory's ``llava_v1``."""
    return "llava_v1" if "llava_v1" in TEMPLATES.names() else "vicuna_v1"
