"""Interface of vision towers: pixel batches [B, 3, H, W] -> tokens [B, N, D].

A tower also owns its preprocessing (``preprocess(images) -> tensor``) so the checkpoint can
rebuild it without the original processor files.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from ..errors import CheckpointError, ConfigError
from .anyres import AnyResLayout, expand_to_square

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
# pad: pad to a square with the mean colour, then resize (LLaVA-1.5's image_aspect_ratio "pad");
# crop: shortest side to the tower's size, then the centre square, as CLIPImageProcessor does
# (the seeds' default, e.g. GEM's "ori"); resize: stretch to the square
IMAGE_ASPECTS = ("pad", "crop", "resize")


class VisionTower(nn.Module):
    tiny_arch: dict = {}
    default_options: dict = {}
    common_options = {"anyres_grid": None}  # LLaVA-NeXT tiling, see anyres.py

    def __init__(self, arch: dict, options: dict):
        super().__init__()
        self.arch = dict(arch)
        self.options = dict(options)
        self.hidden_size = 0
        self.num_tokens = 0
        self.image_size = 224

    @classmethod
    def resolve(cls, arch: dict, options: dict, path: str | None) -> tuple[dict, dict]:
        """Complete architecture and options for a recipe entry (reads ``path`` when given)."""
        raise NotImplementedError

    @classmethod
    def tiny_arch_for(cls, arch: dict, options: dict, real_folder: str | None) -> dict:
        """``arch`` of this tower's test-size twin for a recipe's ``arch``/``options``; ``real_folder``
        holds the real tower's config when one is at hand. Default: the class's ``tiny_arch``."""
        return dict(cls.tiny_arch)

    @classmethod
    def check_options(cls, options: dict) -> dict:
        known = {**cls.common_options, **cls.default_options}
        unknown = set(options) - set(known)
        if unknown:
            raise ConfigError(
                f"model.vision.options: unknown keys {sorted(unknown)}; expected some of {sorted(known)}"
            )
        merged = {**known, **options}
        if "image_aspect" in merged and merged["image_aspect"] not in IMAGE_ASPECTS:
            raise ConfigError(f"model.vision.options.image_aspect: {merged['image_aspect']!r} is not one of "
                              f"{', '.join(IMAGE_ASPECTS)}")
        return merged

    def anyres_layout(self):
        grid = self.options.get("anyres_grid")
        return AnyResLayout.from_options(grid, self.image_size, self.num_tokens) if grid else None

    def load_pretrained(self, path: str) -> None:
        raise NotImplementedError

    def image_processor(self) -> "ImagePreprocessor":
        return ImagePreprocessor(
            size=self.image_size,
            mean=tuple(self.options.get("image_mean", CLIP_MEAN)),
            std=tuple(self.options.get("image_std", CLIP_STD)),
            aspect=self.options.get("image_aspect", "pad"),
            anyres=self.anyres_layout(),
        )


@dataclass(frozen=True)
class ImagePreprocessor:
    """PIL images -> normalised [B, 3, size, size] tensors; small and picklable for workers."""

    size: int
    mean: tuple[float, ...] = CLIP_MEAN
    std: tuple[float, ...] = CLIP_STD
    aspect: str = "pad"  # one of IMAGE_ASPECTS
    anyres: object = None  # AnyResLayout: several views per image

    @property
    def fill(self) -> tuple[int, int, int]:
        return tuple(int(255 * m) for m in self.mean)

    def __call__(self, images: list[Image.Image]) -> torch.Tensor:
        """One view per image: [B, 3, size, size]."""
        out = []
        for img in images:
            img = img.convert("RGB")
            if self.aspect == "pad":
                img = expand_to_square(img, self.fill)
            elif self.aspect == "crop":
                img = shortest_side_centre_crop(img, self.size)
            out.append(self._tensor(img.resize((self.size, self.size), Image.BICUBIC)))
        return torch.stack(out)

    def views(self, image: Image.Image) -> torch.Tensor:
        """All views the tower sees of one image: [V, 3, size, size] (V = 1 without any-resolution)."""
        if self.anyres is None:
            return self([image])
        return torch.stack([self._tensor(v) for v in self.anyres.views(image.convert("RGB"), self.fill)])

    def num_tokens(self, size_hw, fixed: int) -> int:
        return self.anyres.num_tokens(size_hw) if self.anyres is not None else fixed

    def _tensor(self, img: Image.Image) -> torch.Tensor:
        mean = np.asarray(self.mean, dtype=np.float32)
        std = np.asarray(self.std, dtype=np.float32)
        arr = (np.asarray(img, dtype=np.float32) / 255.0 - mean) / std
        return torch.from_numpy(arr.transpose(2, 0, 1).copy())


def shortest_side_centre_crop(img: Image.Image, size: int) -> Image.Image:
    """Shortest side to ``size`` (bicubic), then the centred ``size`` square: CLIPImageProcessor's
    ``resize`` + ``center_crop`` (same rounding of the long side and of the crop offsets)."""
    w, h = img.size
    short, long = (w, h) if w <= h else (h, w)
    new_long = int(size * long / short)
    img = img.resize((size, new_long) if w <= h else (new_long, size), Image.BICUBIC)
    w, h = img.size
    top, left = round((h - size) / 2.0), round((w - size) / 2.0)
    return img.crop((left, top, left + size, top + size))


def check_layers(options: dict, num_layers: int) -> list[int]:
    """The hidden-state indices a tower returns (``layers`` or ``select_layer``), range-checked."""
    if options["select_feature"] not in ("patch", "cls_patch"):
        raise ConfigError(
            f"model.vision.options.select_feature: {options['select_feature']!r} is not one of patch, cls_patch"
        )
    layers = options["layers"] if options["layers"] is not None else [options["select_layer"]]
    key = "layers" if options["layers"] is not None else "select_layer"
    for layer in layers:
        if not isinstance(layer, int) or not -(num_layers + 1) <= layer <= num_layers:
            raise ConfigError(
                f"model.vision.options.{key}: {layer!r} is out of range for a tower with "
                f"{num_layers} layers (use -{num_layers + 1}..{num_layers})"
            )
    return list(layers)


def processor_stats(folder: Path) -> dict:
    """image_mean / image_std from a HF folder's preprocessor_config.json, if it has one."""
    f = folder / "preprocessor_config.json"
    if not f.is_file():
        return {}
    cfg = json.loads(f.read_text())
    return {k: cfg[k] for k in ("image_mean", "image_std") if k in cfg}


def load_weights_into(module: nn.Module, state: dict, path: str, what: str) -> None:
    """Load a tower file's ``state`` into ``module`` (unused tensors ignored): a shape mismatch or a
    parameter the file lacks is a one-line CheckpointError naming the file and ``what`` it should fit."""
    try:
        missing, _ = module.load_state_dict(state, strict=False)
    except RuntimeError as exc:
        raise CheckpointError(f"model.vision.path: {path} does not fit {what}: "
                              f"{str(exc).splitlines()[-1].strip()}") from None
    if missing:
        raise CheckpointError(f"model.vision.path: {path} lacks weights for {len(missing)} parameters of "
                              f"{what}, e.g. {missing[:3]}")


def model_name_in(arch: dict, tower: str, example: str, catalogue: str) -> str:
    """``arch['model_name']`` of a tower a library builds from a name, or a ConfigError."""
    if "model_name" not in arch:
        raise ConfigError(f"model.vision.arch.model_name: required for the {tower} tower, e.g. {example!r} "
                          f"(see {catalogue})")
    return str(arch["model_name"])
