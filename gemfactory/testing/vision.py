"""Vision towers: pixels [B, 3, S, S] -> tokens [B, num_tokens, hidden_size], with an image processor."""
from __future__ import annotations

import json

import numpy as np
import torch
from PIL import Image

from ..registry import VISION_TOWERS
from ..vision.base import VisionTower
from .kit import Failed, Findings
from .modules import check_module, positive_int, rejects_unknown, saved_as_json, subclass_of
from .train_step import check_train_step, model_config

SIZES = ((48, 40), (40, 56))  # two images (width, height) of different shapes


def check(name: str, findings: Findings) -> None:
    cls = VISION_TOWERS.get(name)
    arch, options = findings.need("tiny config", _tiny_config, cls)
    findings.check("unknown option", rejects_unknown, lambda extra: cls.resolve(dict(cls.tiny_arch), extra, None))

    def build(seed: int) -> VisionTower:  # as GemForCausalLM does, from the JSON of config.json
        torch.manual_seed(seed)
        return cls(json.loads(json.dumps(arch)), json.loads(json.dumps(options)))

    tower = findings.need("build", _build, build)
    pixels = findings.need("image processor", _pixels, tower)
    check_module(findings, tower, build, (pixels,),
                 [("batch", len(SIZES)), ("num_tokens", tower.num_tokens), ("hidden_size", tower.hidden_size)])
    check_train_step(findings, model_config(vision={"name": name, "arch": dict(cls.tiny_arch)}), "vision_tower")


def _tiny_config(cls) -> tuple:
    subclass_of(cls, VisionTower)
    arch, options = cls.resolve(dict(cls.tiny_arch), {}, None)
    saved_as_json([arch, options], "the resolved arch and options")
    return (arch, options), f"resolve(tiny_arch, {{}}, None): {len(arch)} arch keys, JSON-serialisable"


def _build(build) -> tuple:
    tower = build(0)
    hidden, tokens = positive_int(tower, "hidden_size"), positive_int(tower, "num_tokens")
    size = positive_int(tower, "image_size")
    n = sum(p.numel() for p in tower.parameters())
    return tower, f"{type(tower).__name__}: {size} px -> {tokens} tokens x {hidden}, {n:,} parameters"


def _pixels(tower) -> tuple:
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for w, h in SIZES]
    pixels = tower.image_processor()(images)
    want = [len(SIZES), 3, tower.image_size, tower.image_size]
    if not isinstance(pixels, torch.Tensor) or list(pixels.shape) != want:
        got = list(pixels.shape) if isinstance(pixels, torch.Tensor) else type(pixels).__name__
        raise Failed(f"image_processor()(images) must give a tensor {want}, got {got}")
    return pixels, f"{len(SIZES)} PIL images {', '.join(f'{w}x{h}' for w, h in SIZES)} -> {want}"
