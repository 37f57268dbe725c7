"""HF SigLIP vision tower: every patch token of one layer (or several, concatenated).

SigLIP has no CLS token, so all ``(image_size / patch_size) ** 2`` patch tokens are kept
(``select_feature: drop_first_patch`` drops the first one, as TinyLLaVA's ``patch`` strategy does).
``select_layer`` defaults to -2 (TinyLLaVA's choice); ``layers: [-2, -8]`` concatenates several
layers along the channel axis as in the ``clip`` tower. The attention-pooling head is never used
for tokens, so it is left out (``vision_use_head: false``) unless the arch asks for it.
"""
from __future__ import annotations

from pathlib import Path

import torch

from .. import hub
from ..errors import ConfigError
from ..registry import VISION_TOWERS
from .base import VisionTower, check_layers, processor_stats
from .depth import hf_tiny_arch

SIGLIP_MEAN = (0.5, 0.5, 0.5)
SIGLIP_STD = (0.5, 0.5, 0.5)
_NOT_ARCH = ("transformers_version", "model_type", "architectures")


@VISION_TOWERS.register("siglip")
class SigLIPTower(VisionTower):
    """HF SigLIP vision encoder; all patch tokens of select_layer (default -2, as TinyLLaVA)."""

    tiny_arch = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=3,
                     num_attention_heads=4, image_size=32, patch_size=16)
    default_options = dict(select_layer=-2, select_feature="patch", layers=None, image_aspect="pad",
                           image_mean=list(SIGLIP_MEAN), image_std=list(SIGLIP_STD))

    @classmethod
    def tiny_arch_for(cls, arch: dict, options: dict, real_folder: str | None) -> dict:
        from transformers import SiglipVisionConfig

        return hf_tiny_arch(cls, arch, options, real_folder, SiglipVisionConfig)

    def __init__(self, arch: dict, options: dict):
        super().__init__(arch, options)
        from transformers import SiglipVisionConfig, SiglipVisionModel

        self.model = SiglipVisionModel(SiglipVisionConfig(**arch))
        cfg = self.model.config
        if self.options["select_feature"] == "cls_patch":
            raise ConfigError(
                "model.vision.options.select_feature: 'cls_patch' needs a CLS token and SigLIP has "
                "none; use 'patch'"
            )
        # drop_first_patch: TinyLLaVA's ``patch`` strategy, which drops token 0 on SigLIP too
        self.drop_first = self.options["select_feature"] == "drop_first_patch"
        self.layers = check_layers({**self.options, "select_feature": "patch"} if self.drop_first else self.options,
                                   cfg.num_hidden_layers)
        self.image_size = cfg.image_size
        self.num_tokens = (cfg.image_size // cfg.patch_size) ** 2 - (1 if self.drop_first else 0)
        self.hidden_size = cfg.hidden_size * len(self.layers)

    @classmethod
    def resolve(cls, arch: dict, options: dict, path: str | None):
        from transformers import SiglipVisionConfig

        given = dict(options)
        options = cls.check_options(options)
        known = set(SiglipVisionConfig().to_dict()) - set(_NOT_ARCH)
        unknown = set(arch) - known
        if unknown:
            raise ConfigError(
                f"model.vision.arch: unknown keys {sorted(unknown)} for SigLIP; "
                f"expected some of {sorted(known)}"
            )
        if path:
            path = hub.resolve(path, "model.vision.path", "config") if hub.is_hub_ref(path) else path
            if not Path(path).is_dir():
                raise ConfigError(f"model.vision.path: {path!r} is not a local folder")
            # reads a SiglipVisionConfig, or the vision part of a full SiglipConfig
            base = SiglipVisionConfig.from_pretrained(path).to_diff_dict()
            stats = processor_stats(Path(path))  # the folder's mean/std, unless the recipe sets them
            options.update({k: v for k, v in stats.items() if k not in given})
        else:
            base = dict(cls.tiny_arch)
        full = SiglipVisionConfig(**{**base, "vision_use_head": False, **arch}).to_diff_dict()
        for key in _NOT_ARCH:
            full.pop(key, None)
        return full, options

    def load_pretrained(self, path: str) -> None:
        from transformers import SiglipVisionModel

        path = hub.resolve(path, "model.vision.path") if hub.is_hub_ref(path) else path
        loaded = SiglipVisionModel.from_pretrained(path, config=self.model.config)
        self.model.load_state_dict(loaded.state_dict())

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        dtype = self.model.embeddings.patch_embedding.weight.dtype
        out = self.model(pixel_values.to(dtype), output_hidden_states=True)
        feats = torch.cat([out.hidden_states[i] for i in self.layers], dim=-1)
        return feats[:, 1:] if self.drop_first else feats
