"""transformers' LLaVA (``LlavaForConditionalGeneration``, e.g. llava-hf/llava-1.5-7b-hf).

config.json holds ``text_config``, ``vision_config``, ``vision_feature_layer`` (one index or a list,
concatenated), ``vision_feature_select_strategy`` (``default``: drop CLS; ``full``: keep every token),
``projector_hidden_act``, ``multimodal_projector_bias`` and ``image_token_index``. Key names are
transformers 5's (``model.language_model.``, ``model.vision_tower.``, ``model.multi_modal_projector.``,
``lm_head.``); 4.x names are renamed first, as transformers' own conversion mapping does.
"""
from __future__ import annotations

from pathlib import Path

from . import FORMATS
from .base import STALE_BUFFERS, ImportPlan, SeedFormat, hf_image_aspect, llm_family_of, refuse, rename, vision_entry
from .vip_llava import HF_LEGACY

RULES = (
    (r"^model\.multi_modal_projector\.linear_1\.", "connectors.image.0."),
    (r"^model\.multi_modal_projector\.linear_2\.", "connectors.image.2."),
    (r"^model\.vision_tower\.", "vision_tower.model."),
    (r"^model\.language_model\.", "language_model.model."),
    (r"^lm_head\.", "language_model.lm_head."),
)


@FORMATS.register("llava-hf")
class LlavaHFFormat(SeedFormat):
    summary = "transformers' LlavaForConditionalGeneration (llava-hf/*)"

    def detect(self, src: Path, config: dict) -> bool:
        return config.get("model_type") == "llava" and "mm_vision_tower" not in config

    def plan(self, src: Path, config: dict, options: dict) -> ImportPlan:
        from transformers import AutoConfig

        if config.get("projector_hidden_act", "gelu") != "gelu":
            refuse("projector_hidden_act", config["projector_hidden_act"], "gemfactory's mlp2x_gelu uses gelu")
        if config.get("multimodal_projector_bias", True) is not True:
            refuse("multimodal_projector_bias", config["multimodal_projector_bias"], "gemfactory's projector has biases")
        text = dict(config.get("text_config") or {"model_type": "llama"})
        text_config = AutoConfig.for_model(text.pop("model_type", "llama"), **text)
        vision = config.get("vision_config") or {"model_type": "clip_vision_model"}
        strategy = config.get("vision_feature_select_strategy", "default")
        if strategy not in ("default", "full"):
            refuse("vision_feature_select_strategy", strategy, "transformers knows default and full")
        is_siglip = vision.get("model_type", "").startswith("siglip")
        if is_siglip and strategy == "default":
            refuse("vision_feature_select_strategy", strategy, "dropping the first SigLIP patch token has no "
                   "twin in gemfactory's siglip tower here")
        feature = "patch" if strategy == "default" or is_siglip else "cls_patch"
        layer = config.get("vision_feature_layer", -2)
        aspect = hf_image_aspect(src)
        return ImportPlan(
            text_config=text_config,
            llm_family=llm_family_of(text_config.model_type, str(text.get("_name_or_path", ""))),
            vision=vision_entry(vision.get("model_type", "clip_vision_model"), vision,
                                select_layer=layer if isinstance(layer, int) else None,
                                layers=None if isinstance(layer, int) else layer, select_feature=feature, **aspect),
            connectors={"image": {"name": "mlp2x_gelu", "options": {}}},
            template=_template(),
            image_token_id=config.get("image_token_index", config.get("image_token_id", 32000)),
        )

    def map_keys(self, state: dict):
        legacy, _, kept = rename(state, HF_LEGACY)
        legacy.update({k: state[k] for k in kept})
        return rename(legacy, (*RULES, *STALE_BUFFERS))


def _template() -> str:
    from ._llava_common import llava_template

    return llava_template()
