"""timm image tower: any timm model by name, its final feature map read as tokens.

``arch: {model_name: vit_tiny_patch16_224, img_size: 224, depth: 12, ...}``: the name (a
pretrained tag such as ``.augreg_in21k`` only chooses the preprocessing statistics) and keyword
arguments for ``timm.create_model``; the model is always built with ``pretrained=False`` and
without its classifier (``num_classes=0``). ``path`` is a weight file in timm's layout
(``.safetensors``, or a ``torch.save`` state dict read with ``weights_only``).

Tokens: ViT-style models give the patch tokens of ``forward_features`` (prefix tokens such as
CLS or registers are kept only with ``select_feature: cls_patch``); ConvNets give their last
feature map, one token per cell ([B, C, H, W] -> [B, H*W, C]). ``select_layer`` (unset: the
final features) picks an earlier block/stage through timm's ``forward_intermediates``, numbered
like the ``clip`` tower: -1 the last, -2 the one before, k >= 1 the k-th. Mean, std and image
size come from timm's data config of the name, unless the options set them.
"""
from __future__ import annotations

import difflib
import logging
from pathlib import Path

import torch

from ..errors import ConfigError
from ..registry import VISION_TOWERS
from ..weights import load_state_file
from .base import VisionTower, load_weights_into, model_name_in
from .depth import needed_depth, tiny_depth

log = logging.getLogger(__name__)
# timm config keys that only set the size, the modules whose models take ViT keyword arguments, and
# the tiny twin's settings per kind of model
TINY_SIZE_KEYS = frozenset({"img_size", "patch_size", "embed_dim", "depth", "num_heads", "depths", "dims",
                            "layers", "mlp_ratio", "pretrained_cfg_overlay"})
TINY_VIT_MODULES = ("vision_transformer", "vision_transformer_hybrid", "deit", "eva", "beit")
TINY_SETTINGS = {
    "vit": dict(img_size=32, patch_size=16, embed_dim=32, num_heads=2),
    "convnext": dict(depths=[1, 1, 1, 1], dims=[16, 32, 48, 64]),
    "resnet": dict(layers=[1, 1, 1, 1]),
}


def _block_count(name: str) -> int | None:
    """The real block count of timm model ``name``, from a weightless build (None when it fails)."""
    import timm

    try:
        with torch.device("meta"):
            return len(timm.create_model(name, pretrained=False, num_classes=0).feature_info)
    except Exception:  # noqa: BLE001 -- the tower itself reports bad names and kwargs
        return None


@VISION_TOWERS.register("timm")
class TimmTower(VisionTower):
    """Any timm image model by name (arch.model_name + create_model kwargs); tokens of its feature map."""

    tiny_arch = dict(model_name="vit_tiny_patch16_224", img_size=32, embed_dim=32, depth=2, num_heads=2)
    default_options = dict(select_layer=None, select_feature="patch", image_size=None, image_aspect="pad",
                           image_mean=None, image_std=None)

    @classmethod
    def tiny_arch_for(cls, arch: dict, options: dict, real_folder: str | None) -> dict:
        import timm

        name = arch.get("model_name")
        if not name:
            raise ConfigError("model.vision.arch.model_name: required for the timm tower")
        kept = {k: v for k, v in arch.items() if k not in TINY_SIZE_KEYS}
        base = str(name).split(".")[0]
        if timm.models.is_model_in_modules(base, list(TINY_VIT_MODULES)):
            key, layers, need = needed_depth(options, None)
            real = arch.get("depth")
            if real is None and need:
                real = _block_count(name)
            return {**kept, **TINY_SETTINGS["vit"], "depth": tiny_depth(2, need, real, key, layers)}
        for kind in ("convnext", "resnet"):
            if timm.models.is_model_in_modules(base, [kind]):
                return {**kept, **TINY_SETTINGS[kind]}
        log.warning("timm model %r: no tiny settings for its kind; the tiny check stands in with %r",
                    name, cls.tiny_arch["model_name"])
        return dict(cls.tiny_arch)

    def __init__(self, arch: dict, options: dict):
        super().__init__(arch, options)
        import timm

        kwargs = dict(arch)
        name = kwargs.pop("model_name")
        if self.options.get("image_size") is None or self.options.get("image_mean") is None:
            self.options = {**_data_options(name, kwargs), **{k: v for k, v in self.options.items() if v is not None}}
        try:
            self.model = timm.create_model(name, pretrained=False, **kwargs)
        except (TypeError, ValueError, AssertionError) as exc:
            raise ConfigError(
                f"model.vision.arch: timm model {name!r} cannot be built from {sorted(kwargs)}: "
                f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1] if str(exc).strip() else ''}"
            ) from None
        if self.options["select_feature"] not in ("patch", "cls_patch"):
            raise ConfigError(
                f"model.vision.options.select_feature: {self.options['select_feature']!r} is not one of patch, cls_patch"
            )
        self._prefix = int(getattr(self.model, "num_prefix_tokens", 0) or 0)
        self._channels_last = getattr(self.model, "output_fmt", "NCHW") == "NHWC"
        self._take = self._check_layer(name)
        self.image_size = int(self.options["image_size"])
        _, self.num_tokens, self.hidden_size = self._probe_shape(name)

    def _check_layer(self, name: str) -> int | None:
        layer = self.options["select_layer"]
        if layer is None:
            return None
        info = getattr(self.model, "feature_info", None)
        if not info or not hasattr(self.model, "forward_intermediates"):
            raise ConfigError(
                f"model.vision.options.select_layer: timm model {name!r} does not expose intermediate "
                "layers; leave select_layer unset to use its final features"
            )
        n = len(info)
        if isinstance(layer, bool) or not isinstance(layer, int) or layer == 0 or not -n <= layer <= n:
            raise ConfigError(
                f"model.vision.options.select_layer: {layer!r} is out of range for timm model {name!r} "
                f"with {n} blocks/stages (use -{n}..-1 or 1..{n})"
            )
        return layer - 1 if layer > 0 else n + layer

    def _probe_shape(self, name: str) -> tuple[int, int, int]:
        """Output shape for one image, computed on the meta device: exact, and no real compute."""
        from torch.func import functional_call

        state = {
            k: torch.empty(tuple(getattr(v, "ds_shape", v.shape)), dtype=v.dtype, device="meta")
            for k, v in [*self.named_parameters(), *self.named_buffers()]
        }
        x = torch.empty(1, 3, self.image_size, self.image_size, device="meta")
        was_training = self.training
        self.eval()  # BatchNorm in training mode refuses a 1x1 map of one image
        try:
            with torch.no_grad():
                out = functional_call(self, state, (x,), strict=False)
        except Exception as exc:
            raise ConfigError(
                f"model.vision.options.image_size: timm model {name!r} cannot read "
                f"{self.image_size}x{self.image_size} images ({type(exc).__name__}: {exc}); "
                "for ViTs set model.vision.arch.img_size"
            ) from None
        finally:
            self.train(was_training)
        return tuple(out.shape)

    @classmethod
    def resolve(cls, arch: dict, options: dict, path: str | None):
        given = {k: v for k, v in options.items() if v is not None}
        options = cls.check_options(options)
        kwargs = dict(arch)
        model_name_in(kwargs, "timm", "vit_base_patch16_224", "timm.list_models()")
        if "pretrained" in kwargs:
            raise ConfigError(
                "model.vision.arch.pretrained: not used; the model is built from its config and the "
                "weights are read from model.vision.path"
            )
        name = str(kwargs.pop("model_name"))
        _check_name(name)
        if path and not Path(path).is_file():
            raise ConfigError(f"model.vision.path: {path!r} is not a weight file")
        full = {"model_name": name, "num_classes": 0, **kwargs}
        options.update({**_data_options(name, kwargs), **given})
        return full, options

    def load_pretrained(self, path: str) -> None:
        state = {k.removeprefix("module."): v for k, v in load_state_file(path, key="model.vision.path").items()}
        load_weights_into(self.model, state, path, f"timm {self.arch['model_name']!r}")

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        x = pixel_values.to(next(self.model.parameters()).dtype)
        keep_prefix = self.options["select_feature"] == "cls_patch"
        if self._take is None:
            feats = self.model.forward_features(x)
            if feats.ndim == 3:  # [B, prefix + N, D]
                return feats if keep_prefix else feats[:, self._prefix:]
            return _flatten(feats, self._channels_last)
        kwargs = dict(indices=[self._take], intermediates_only=True, stop_early=True)
        if self._prefix and keep_prefix:
            kwargs["return_prefix_tokens"] = True
        out = self.model.forward_intermediates(x, **kwargs)[0]
        prefix = None
        if isinstance(out, tuple):
            out, prefix = out
        tokens = _flatten(out, False) if out.ndim == 4 else out  # intermediates come as NCHW
        return tokens if prefix is None else torch.cat([prefix, tokens], dim=1)


def _flatten(feats: torch.Tensor, channels_last: bool) -> torch.Tensor:
    if channels_last:  # [B, H, W, C]
        return feats.flatten(1, 2)
    return feats.flatten(2).transpose(1, 2)  # [B, C, H, W] -> [B, H*W, C]


def _check_name(name: str) -> None:
    import timm

    if timm.is_model(name):
        return
    known = timm.list_models()
    arch = name.split(".")[0]
    close = difflib.get_close_matches(arch.lower(), known, n=5, cutoff=0.6)
    hint = f"; close matches: {', '.join(close)}" if close else ""
    raise ConfigError(
        f"model.vision.arch.model_name: {name!r} is not a timm model{hint} (timm.list_models() has {len(known)})"
    )


def _data_options(name: str, kwargs: dict) -> dict:
    """Image size, mean and std from timm's data config for this name (and its img_size, if any)."""
    from timm.data import resolve_data_config
    from timm.models import get_pretrained_cfg

    try:
        pretrained_cfg = get_pretrained_cfg(name)
    except RuntimeError as exc:
        raise ConfigError(f"model.vision.arch.model_name: {name!r}: {exc}") from None
    img = kwargs.get("img_size")
    if isinstance(img, (list, tuple)):
        if len(img) != 2 or img[0] != img[1]:
            raise ConfigError(f"model.vision.arch.img_size: {img!r}; only square images are supported")
        img = img[0]
    args = {"img_size": int(img)} if img is not None else {}
    cfg = pretrained_cfg.to_dict() if pretrained_cfg is not None else {"input_size": (3, 224, 224)}
    data = resolve_data_config(args, pretrained_cfg=cfg)
    return {"image_size": int(data["input_size"][-1]), "image_mean": [float(m) for m in data["mean"]],
            "image_std": [float(s) for s in data["std"]]}
