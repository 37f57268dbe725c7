"""TinyLLaVA Factory (TinyLLaVA/TinyLLaVA_Factory): ``TinyLlavaForConditionalGeneration`` saved whole.

config.json (``model_type: tinyllava``) holds ``text_config`` and ``vision_config`` dicts,
``connector_type`` (``mlpNx_gelu``, ``linear``, ``identity``; resampler / qformer / mof are refused),
``vision_feature_layer`` and ``vision_feature_select_strategy``. Weights: ``language_model.`` (the
HF causal LM), ``vision_tower._vision_tower.`` (the HF vision model), ``connector._connector.``.
TinyLLaVA's ``patch`` strategy drops the first token on every tower (``vision_tower/base.py``), on
SigLIP too, where that token is a patch: gemfactory's siglip ``select_feature: drop_first_patch``.
A pretraining run's layout (``training_recipe/base.py`` ``save``: top-level config.json, and
``language_model/``, ``vision_tower/``, ``connector/`` each with a ``pytorch_model.bin`` of that part's
named parameters) is read too, each part under the prefix it has in the whole model.
"""
from __future__ import annotations

import re
from pathlib import Path

from . import FORMATS
from .base import (
    FormatError,
    ImportPlan,
    SeedFormat,
    aspect_from_seed,
    llm_family_of,
    load_folder_state,
    refuse,
    vision_entry,
)

CONNECTORS = ("linear", "identity")
#: sub-folder of a pretraining run -> the prefix of its named parameters in the whole model
PARTS = {"language_model": "language_model.", "vision_tower": "vision_tower._vision_tower.", "connector": "connector."}


@FORMATS.register("tinyllava")
class TinyLlavaFormat(SeedFormat):
    summary = "TinyLLaVA Factory's saved TinyLlavaForConditionalGeneration (language_model / vision_tower / connector)"
    rules = (
        (r"^language_model\.", "language_model."),
        (r"^vision_tower\._vision_tower\.", "vision_tower.model."),
        (r"^connector\._connector\.", "connectors.image."),
    )

    def detect(self, src: Path, config: dict) -> bool:
        return config.get("model_type") == "tinyllava"

    def read_weights(self, src: Path) -> dict:
        if not all((src / part).is_dir() for part in PARTS):
            return load_folder_state(src)
        state = {}
        for part, prefix in PARTS.items():
            weights = src / part / "pytorch_model.bin"
            if not weights.is_file():
                raise FormatError(f"{src / part}: no pytorch_model.bin (TinyLLaVA's saved {part})")
            state.update({prefix + k: v for k, v in load_folder_state(src / part).items()})
        return state

    def plan(self, src: Path, config: dict, options: dict) -> ImportPlan:
        from transformers import AutoConfig

        connector = config.get("connector_type")
        if connector not in CONNECTORS and not re.fullmatch(r"mlp\d+x_gelu", connector or ""):
            refuse("connector_type", connector, "gemfactory imports TinyLLaVA's linear, identity and mlpNx_gelu")
        if config.get("vision_model_name_or_path2"):
            refuse("vision_model_name_or_path2", config["vision_model_name_or_path2"], "two-tower (MoF) models are not imported")
        text = dict(config.get("text_config") or {})
        text_config = AutoConfig.for_model(text.pop("model_type", "llama"), **text)
        vision = dict(config.get("vision_config") or {})
        kind = vision.get("model_type", "clip_vision_model")
        strategy = config.get("vision_feature_select_strategy", "patch")
        if strategy not in ("patch", "cls_patch"):
            refuse("vision_feature_select_strategy", strategy, "TinyLLaVA's choices are patch and cls_patch")
        if kind.startswith("siglip"):
            feature = "drop_first_patch" if strategy == "patch" else "patch"
        else:
            feature = strategy
        hint = f"{config.get('llm_model_name_or_path', '')} {text.get('_name_or_path', '')}"
        family = llm_family_of(text_config.model_type, hint)
        return ImportPlan(
            text_config=text_config,
            llm_family=family,
            vision=vision_entry(kind, vision, select_layer=config.get("vision_feature_layer", -2),
                                select_feature=feature, image_aspect=aspect_from_seed(config.get("image_aspect_ratio", "square"), kind)),
            connectors={"image": {"name": connector, "options": {}}},
            template=_family_template(family),
        )


def _family_template(family: str) -> str:
    from ..registry import LLMS

    return LLMS.get(family).default_template
