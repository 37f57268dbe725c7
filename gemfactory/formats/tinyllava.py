"""TinyLLaVA Factory (TinyLLaVA/TinyLLaVA_Factory): ``TinyLlavaForConditionalGeneration`` saved whole.

config.json (``model_type: tinyllava``) holds ``text_config`` and ``vision_config`` dicts,
``connector_type`` (``mlpNx_gelu``, ``linear``, ``identity``; resampler / qformer / mof are refused),
``vision_feature_layer`` and ``vision_feature_select_strategy``. Weights: ``language_model.`` (the
HF causal LM), ``vision_tower._vision_tower.`` (the HF vision model), ``connector._connector.``.
TinyLLaVA's ``patch`` strategy drops the first token on every tower (``vision_tower/base.py``), on
SigLIP too, where that token is a patch: gemfactory's siglip ``select_feature: drop_first_patch``.
The sub-folder layout of a training run (``language_model/``, ``vision_tower/``, ``connector/``) is not
read; load it with TinyLLaVA's code and save_pretrained it first.
"""
from __future__ import annotations

import re
from pathlib import Path

from . import FORMATS
from .base import ImportPlan, SeedFormat, aspect_from_seed, llm_family_of, refuse, vision_entry

CONNECTORS = ("linear", "identity")


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
                                select_feature=feature, image_aspect=aspect_from_seed(config.get("image_aspect_ratio", "square"))),
            connectors={"image": {"name": connector, "options": {}}},
            template=_family_template(family),
        )


def _family_template(family: str) -> str:
    from ..registry import LLMS

    return LLMS.get(family).default_template
