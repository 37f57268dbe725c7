"""Original LLaVA-1.5 (``LlavaLlamaForCausalLM``, haotian-liu/LLaVA).

Weights as ``LlavaLlamaForCausalLM.save_pretrained`` writes them: the LLM under ``model.`` and
``lm_head.``, the projector under ``model.mm_projector.`` (an ``nn.Sequential``: ``0``, ``2`` for
mlp2x_gelu), the CLIP tower under ``model.vision_tower.vision_tower.`` when it was saved; released
LLaVA-1.5 checkpoints leave it out and load CLIP from ``mm_vision_tower``, and so does the import
(or from ``--vision-tower``).
"""
from __future__ import annotations

from pathlib import Path

from . import FORMATS
from ._llava_common import check_llava_fields, clip_vision, llava_template, llm_type, tower_folder
from .base import ImportPlan, SeedFormat, llm_family_of, projector_entry, text_config_from

VISION_PREFIX = "model.vision_tower."


@FORMATS.register("llava")
class LlavaFormat(SeedFormat):
    summary = "original LLaVA-1.5 (LlavaLlamaForCausalLM: mm_projector, mm_vision_tower)"
    rules = (
        (r"^model\.mm_projector\.", "connectors.image."),
        (r"^model\.vision_tower\.vision_tower\.", "vision_tower.model."),
        (r"^lm_head\.", "language_model.lm_head."),
        (r"^model\.", "language_model.model."),
    )
    default_tower: str | None = None

    def detect(self, src: Path, config: dict) -> bool:
        return ("mm_vision_tower" in config and "mm_ecg_tower" not in config
                and config.get("mm_vision_tower") != "clip_4layers_336")

    def plan(self, src: Path, config: dict, options: dict) -> ImportPlan:
        from .importer import local_source

        check_llava_fields(config)
        kind = llm_type(config)
        tower_name = tower_folder(config, options, self.default_tower)
        has_tower = any(k.startswith(VISION_PREFIX) for k in options.get("state_keys", ()))
        tower = local_source(tower_name, "mm_vision_tower (or --vision-tower)")
        plan = ImportPlan(
            text_config=text_config_from(config, kind, drop=self.extra_fields),
            llm_family=llm_family_of(kind, str(config.get("_name_or_path", ""))),
            vision=self.vision(config, tower),
            connectors={"image": self.connector(config)},
            template=llava_template(),
        )
        if not has_tower:
            plan.external["vision_tower."] = str(tower)
        return plan

    extra_fields = ("use_mm_proj", "image_aspect_ratio", "image_grid_pinpoints", "tune_mm_mlp_adapter",
                    "freeze_mm_mlp_adapter", "unfreeze_mm_vision_tower", "tokenizer_model_max_length",
                    "tokenizer_padding_side", "s2", "s2_scales", "mm_vision_tower", "open_clip_config",
                    "ecg_projector_type")

    def vision(self, config: dict, tower: Path) -> dict:
        return clip_vision(config, tower)

    def connector(self, config: dict) -> dict:
        return projector_entry(config.get("mm_projector_type", "linear"), "mm_projector_type")
