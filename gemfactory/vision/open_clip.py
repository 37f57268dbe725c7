"""open_clip ViT image tower: patch tokens of a chosen layer of any open_clip ViT architecture.

``arch: {model_name: ViT-B-32}`` takes the image tower of that open_clip config; any field of
open_clip's ``CLIPVisionCfg`` (``width``, ``layers``, ``patch_size``, ``image_size`` ...) may be
overridden next to it, as may ``embed_dim`` and ``quick_gelu`` (true for OpenAI-trained weights,
or pick a ``-quickgelu`` name). Only the image tower is built, never the text tower. ``path`` is
a weight file (``.safetensors``, or a ``torch.save`` state dict read with ``weights_only``) of a
whole CLIP model (``visual.*`` keys are taken) or of the image tower alone.

Layers are numbered like the ``clip`` tower's hidden states: 0 is the embedding output (after
``ln_pre``), k the output of block k, -1 the last block; ``select_layer`` defaults to -2.
Towers built on ModifiedResNet or on a timm trunk are refused: use the ``timm`` tower for those.
"""
from __future__ import annotations

import dataclasses
import difflib
from types import SimpleNamespace

import torch

from ..errors import ConfigError
from ..registry import VISION_TOWERS
from ..weights import load_state_file
from .base import CLIP_MEAN, CLIP_STD, VisionTower, check_layers, load_weights_into, model_name_in
from .depth import needed_depth, tiny_depth

_TOP_KEYS = ("model_name", "embed_dim", "quick_gelu")


@VISION_TOWERS.register("open_clip")
class OpenCLIPTower(VisionTower):
    """Image tower of any open_clip ViT by name (arch.model_name); patch tokens of select_layer."""

    tiny_arch = dict(model_name="ViT-B-32", embed_dim=32, width=32, layers=2, head_width=16,
                     patch_size=16, image_size=32)
    default_options = dict(select_layer=-2, select_feature="patch", layers=None, image_aspect="pad",
                           image_mean=list(CLIP_MEAN), image_std=list(CLIP_STD))

    TINY_SIZE_KEYS = frozenset({"width", "layers", "head_width", "patch_size", "image_size", "embed_dim",
                                "mlp_ratio"})

    @classmethod
    def tiny_arch_for(cls, arch: dict, options: dict, real_folder: str | None) -> dict:
        key, layers, need = needed_depth(options, cls.default_options.get("select_layer"))
        full, _ = cls.resolve(arch, options, None)  # the named config says the real depth
        kept = {k: v for k, v in arch.items() if k not in cls.TINY_SIZE_KEYS}
        depth = tiny_depth(cls.tiny_arch["layers"], need, int(full.get("layers", 12)), key, layers)
        return {**cls.tiny_arch, **kept, "model_name": full["model_name"], "layers": depth}

    def __init__(self, arch: dict, options: dict):
        super().__init__(arch, options)
        from open_clip.model import _build_vision_tower

        a = dict(arch)
        vision_cfg = {k: v for k, v in a.items() if k not in _TOP_KEYS}
        self.visual = _build_vision_tower(a["embed_dim"], vision_cfg, quick_gelu=a.get("quick_gelu", False))
        blocks = self.visual.transformer.resblocks
        # the pooled/projected output is never used for tokens: drop the final norm and projection
        self.visual.prune_intermediate_layers(indices=len(blocks), prune_norm=True, prune_head=True)
        for name in ("attn_pool", "attn_pool_contrastive"):
            if getattr(self.visual, name, None) is not None:
                setattr(self.visual, name, None)
        self.layers = check_layers(self.options, len(blocks))
        # hidden-state index: 0 = embeddings, k = output of block k
        self._hidden = [i if i >= 0 else len(blocks) + 1 + i for i in self.layers]
        grid_h, grid_w = self.visual.grid_size
        self.image_size = self.visual.image_size[0]
        self.num_tokens = grid_h * grid_w + (1 if self.options["select_feature"] == "cls_patch" else 0)
        self.hidden_size = self.visual.transformer.width * len(self.layers)

    @classmethod
    def resolve(cls, arch: dict, options: dict, path: str | None):
        from open_clip.model import CLIPVisionCfg

        options = cls.check_options(options)
        arch = dict(arch)
        name = model_name_in(arch, "open_clip", "ViT-B-32", "open_clip.list_models()")
        arch.pop("model_name")
        model_cfg = _model_config(name)
        fields = {f.name for f in dataclasses.fields(CLIPVisionCfg)}
        unknown = set(arch) - fields - set(_TOP_KEYS)
        if unknown:
            raise ConfigError(
                f"model.vision.arch: unknown keys {sorted(unknown)} for open_clip; expected "
                f"model_name, embed_dim, quick_gelu or fields of open_clip's CLIPVisionCfg: {sorted(fields)}"
            )
        vision = {**model_cfg["vision_cfg"], **{k: v for k, v in arch.items() if k in fields}}
        if vision.get("timm_model_name"):
            raise ConfigError(
                f"model.vision.arch.model_name: open_clip model {name!r} has a timm trunk "
                f"({vision['timm_model_name']!r}); use the timm tower with that model_name instead"
            )
        if isinstance(vision.get("layers"), (list, tuple)):
            raise ConfigError(
                f"model.vision.arch.model_name: open_clip model {name!r} has a ModifiedResNet image "
                "tower; the open_clip tower reads ViTs only (use the timm tower for ResNets)"
            )
        size = vision.get("image_size", 224)
        if isinstance(size, (list, tuple)):
            if len(size) != 2 or size[0] != size[1]:
                raise ConfigError(f"model.vision.arch.image_size: {size!r}; only square images are supported")
            vision["image_size"] = size = int(size[0])
        width, head_width = vision.get("width", 768), vision.get("head_width", 64)
        if width % head_width:
            raise ConfigError(f"model.vision.arch.width: {width} is not a multiple of head_width {head_width}")
        if vision.get("patch_dropout", 0):
            raise ConfigError(
                "model.vision.arch.patch_dropout: must be 0 here; dropping patches would change the "
                "number of image tokens"
            )
        full = {
            "model_name": name,
            "embed_dim": int(arch.get("embed_dim", model_cfg["embed_dim"])),
            "quick_gelu": bool(arch.get("quick_gelu", model_cfg.get("quick_gelu", False))),
            **vision,
        }
        return full, options

    def load_pretrained(self, path: str) -> None:
        from open_clip.model import resize_pos_embed

        state = {k.removeprefix("module."): v for k, v in load_state_file(path, key="model.vision.path").items()}
        if any(k.startswith("visual.") for k in state):
            state = {k.removeprefix("visual."): v for k, v in state.items() if k.startswith("visual.")}
        # a checkpoint trained at another resolution: interpolate its position grid (open_clip's helper)
        wrapped = {"visual.positional_embedding": state["positional_embedding"]} if "positional_embedding" in state else {}
        resize_pos_embed(wrapped, SimpleNamespace(visual=self.visual))
        if wrapped:
            state["positional_embedding"] = wrapped["visual.positional_embedding"]
        load_weights_into(self.visual, state, path, f"open_clip {self.arch['model_name']!r}")

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        x = pixel_values.to(self.visual.conv1.weight.dtype)
        blocks = sorted({h - 1 for h in self._hidden if h > 0})
        captured = {}
        hook = None
        if 0 in self._hidden:  # the embeddings: the output of ln_pre, before the first block
            hook = self.visual.ln_pre.register_forward_hook(lambda m, i, o: captured.__setitem__(0, o))
        try:
            out = self.visual.forward_intermediates(
                x, indices=blocks or [0], stop_early=True, intermediates_only=True,
                output_fmt="NLC", output_extra_tokens=True,
            )
        finally:
            if hook is not None:
                hook.remove()
        for b, patches, prefix in zip(blocks, out["image_intermediates"], out["image_intermediates_prefix"]):
            captured[b + 1] = torch.cat([prefix, patches], dim=1)
        feats = torch.cat([captured[h] for h in self._hidden], dim=-1)
        return feats if self.options["select_feature"] == "cls_patch" else feats[:, 1:]


def _model_config(name: str) -> dict:
    import open_clip
    from open_clip.factory import get_model_config

    if name.startswith(("hf-hub:", "local-dir:")):
        raise ConfigError(
            f"model.vision.arch.model_name: {name!r}: hub and folder names are not read here; "
            "give a built-in architecture name and the weight file as model.vision.path"
        )
    cfg = get_model_config(name.replace("/", "-"))
    if cfg is None:
        known = open_clip.list_models()
        lower = {k.lower(): k for k in known}
        close = [lower[c] for c in difflib.get_close_matches(name.lower(), list(lower), n=5, cutoff=0.6)]
        hint = f"; close matches: {', '.join(close)}" if close else ""
        raise ConfigError(
            f"model.vision.arch.model_name: {name!r} is not an open_clip architecture{hint} "
            f"(open_clip.list_models() has {len(known)})"
        )
    return cfg
