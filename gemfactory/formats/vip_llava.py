"""ViP-LLaVA (mu-cai/ViP-LLaVA): LLaVA's layout with a five-layer CLIP fusion.

``mm_vision_tower: clip_4layers_336`` is the seed's ``CLIPVisionTowerMultilayer``: CLIP ViT-L/14-336
(read from ``openai/clip-vit-large-patch14-336`` whatever the config says), patch tokens of hidden
states ``[-2, -5, -8, -11, 6]`` concatenated on the channel axis; its projector is
``SimpleFeatureSingleModel``: ``clip_layernorm`` over the concatenation, then the mlp2x_gelu
``final_linear`` (gemfactory's ``layernorm_mlp2x_gelu``: ``norm`` then ``mlp``). The same model
saved by transformers (``VipLlavaForConditionalGeneration``) imports too.
"""
from __future__ import annotations

import re
from pathlib import Path

from . import FORMATS
from .base import STALE_BUFFERS, ImportPlan, hf_image_aspect, llm_family_of, refuse, rename, vision_entry
from .llava import LlavaFormat

VIP_LAYERS = [-2, -5, -8, -11, 6]  # clip_4layer_encoder.py: feature_select
VIP_TOWER = "openai/clip-vit-large-patch14-336"  # hard-coded in clip_4layer_encoder.py
HF_RULES = (  # VipLlavaForConditionalGeneration (transformers >= 5 names; older ones are renamed first)
    (r"^model\.multi_modal_projector\.projector_layernorm\.", "connectors.image.norm."),
    (r"^model\.multi_modal_projector\.linear_1\.", "connectors.image.mlp.0."),
    (r"^model\.multi_modal_projector\.linear_2\.", "connectors.image.mlp.2."),
    (r"^model\.vision_tower\.", "vision_tower.model."),
    (r"^model\.language_model\.", "language_model.model."),
    (r"^lm_head\.", "language_model.lm_head."),
)
#: transformers 4.x key names of Llava / VipLlava checkpoints -> 5.x (conversion_mapping.py, "llava")
HF_LEGACY = ((r"^language_model\.lm_head\.", "lm_head."), (r"^language_model\.model\.", "model.language_model."),
             (r"^vision_tower\.", "model.vision_tower."), (r"^multi_modal_projector\.", "model.multi_modal_projector."))


@FORMATS.register("vip-llava")
class VipLlavaFormat(LlavaFormat):
    summary = "ViP-LLaVA (clip_4layers_336 five-layer fusion + layernorm projector), original or transformers"
    rules = (
        (r"^model\.mm_projector\.clip_layernorm\.", "connectors.image.norm."),
        (r"^model\.mm_projector\.final_linear\.", "connectors.image.mlp."),
        *LlavaFormat.rules[1:],
    )
    default_tower = VIP_TOWER

    def detect(self, src: Path, config: dict) -> bool:
        return config.get("mm_vision_tower") == "clip_4layers_336" or config.get("model_type") == "vipllava"

    def plan(self, src: Path, config: dict, options: dict) -> ImportPlan:
        if config.get("model_type") == "vipllava":
            return hf_plan(src, config)
        return super().plan(src, config, {**options, "vision_tower": options.get("vision_tower") or VIP_TOWER})

    def map_keys(self, state: dict):
        if any(re.match(r"^(model\.)?multi_modal_projector\.", k) for k in state):
            legacy, _, kept = rename(state, HF_LEGACY)
            legacy.update({k: state[k] for k in kept})
            return rename(legacy, (*HF_RULES, *STALE_BUFFERS))
        return super().map_keys(state)

    def vision(self, config: dict, tower: Path) -> dict:
        from ._llava_common import clip_vision

        return clip_vision({**config, "mm_vision_select_feature": "patch"}, tower, layers=VIP_LAYERS)

    def connector(self, config: dict) -> dict:
        kind = config.get("mm_projector_type", "linear")
        match = re.fullmatch(r"mlp(\d+)x_gelu", kind)
        if not match:  # the seed wraps only an mlp in SimpleFeatureSingleModel for clip_4layers_336
            refuse("mm_projector_type", kind, "ViP-LLaVA's clip_4layers_336 projector is layernorm + mlpNx_gelu")
        return {"name": f"layernorm_{kind}", "options": {}}


def hf_plan(src: Path, config: dict) -> ImportPlan:
    from transformers import AutoConfig

    if config.get("projector_layernorm_eps", 1e-5) != 1e-5:
        refuse("projector_layernorm_eps", config["projector_layernorm_eps"], "gemfactory's layernorm is eps 1e-5")
    if config.get("projector_hidden_act", "gelu") != "gelu":
        refuse("projector_hidden_act", config["projector_hidden_act"], "gemfactory's projector uses gelu")
    text = config.get("text_config") or {}
    text_config = AutoConfig.for_model(text.get("model_type", "llama"), **{k: v for k, v in text.items() if k != "model_type"})
    vision = config.get("vision_config") or {}
    return ImportPlan(
        text_config=text_config,
        llm_family=llm_family_of(text_config.model_type, str(text.get("_name_or_path", ""))),
        vision=vision_entry(vision.get("model_type", "clip_vision_model"), vision,
                            layers=config.get("vision_feature_layer", config.get("vision_feature_layers", VIP_LAYERS)), select_feature="patch",
                            **hf_image_aspect(src)),
        connectors={"image": {"name": "layernorm_mlp2x_gelu", "options": {}}},
        template="llava_v1" if _has_llava_v1() else "vicuna_v1",
        image_token_id=config.get("image_token_index", config.get("image_token_id")),
    )


def _has_llava_v1() -> bool:
    from ._llava_common import llava_template

    return llava_template() == "llava_v1"

