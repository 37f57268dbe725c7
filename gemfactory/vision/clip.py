"""HF CLIP vision tower with LLaVA's feature selection (``select_layer``, ``select_feature``).

``layers: [-2, -5, -8, -11]`` concatenates several layers' patch features along the channel axis
(ViP-LLaVA's multi-level fusion); otherwise ``select_layer`` picks one (LLaVA-1.5 uses -2).
"""
from __future__ import annotations

from pathlib import Path

import torch

from .. import hub
from ..errors import ConfigError
from ..registry import VISION_TOWERS
from .base import CLIP_MEAN, CLIP_STD, VisionTower, check_layers, processor_stats
from .depth import hf_tiny_arch


@VISION_TOWERS.register("clip")
class CLIPTower(VisionTower):
    tiny_arch = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=3,
                     num_attention_heads=4, image_size=64, patch_size=16)
    default_options = dict(select_layer=-2, select_feature="patch", layers=None,
                           image_aspect="pad", image_mean=list(CLIP_MEAN), image_std=list(CLIP_STD))

    @classmethod
    def tiny_arch_for(cls, arch: dict, options: dict, real_folder: str | None) -> dict:
        from transformers import CLIPVisionConfig

        return hf_tiny_arch(cls, arch, options, real_folder, CLIPVisionConfig)

    def __init__(self, arch: dict, options: dict):
        super().__init__(arch, options)
        from transformers import CLIPVisionConfig, CLIPVisionModel

        self.model = CLIPVisionModel(CLIPVisionConfig(**arch))
        cfg = self.model.config
        self.image_size = cfg.image_size
        self.layers = check_layers(self.options, cfg.num_hidden_layers)
        n_patches = (cfg.image_size // cfg.patch_size) ** 2
        self.num_tokens = n_patches + (1 if self.options["select_feature"] == "cls_patch" else 0)
        self.hidden_size = cfg.hidden_size * len(self.layers)

    @classmethod
    def resolve(cls, arch: dict, options: dict, path: str | None):
        from transformers import CLIPVisionConfig

        options = cls.check_options(options)
        if path:
            path = hub.resolve(path, "model.vision.path", "config") if hub.is_hub_ref(path) else path
            if not Path(path).is_dir():
                raise ConfigError(f"model.vision.path: {path!r} is not a local folder")
            base = CLIPVisionConfig.from_pretrained(path).to_diff_dict()
            options.update(processor_stats(Path(path)))
        else:
            base = dict(cls.tiny_arch)
        full = CLIPVisionConfig(**{**base, **arch}).to_diff_dict()
        for key in ("transformers_version", "model_type", "architectures"):
            full.pop(key, None)
        return full, options

    def load_pretrained(self, path: str) -> None:
        from transformers import CLIPVisionModel

        path = hub.resolve(path, "model.vision.path") if hub.is_hub_ref(path) else path
        loaded = CLIPVisionModel.from_pretrained(path, config=self.model.config)
        self.model.load_state_dict(loaded.state_dict())

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        dtype = self.model.embeddings.patch_embedding.weight.dtype
        out = self.model(pixel_values.to(dtype), output_hidden_states=True)
        feats = torch.cat([out.hidden_states[i] for i in self.layers], dim=-1)
        return feats if self.options["select_feature"] == "cls_patch" else feats[:, 1:]
