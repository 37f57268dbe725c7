"""1D Vision Transformer over 12-lead ECG in the ECG-CoCa shape.

A Conv1d patch embedding (kernel = stride = patch size) over the leads, a CLS token, learned
positions and pre-norm transformer blocks. Full size: 12 x 5000 samples (10 s at 500 Hz), patch
50 -> 1 + 100 = 101 tokens of width 768, 12 layers, 12 heads. Block names follow open_clip's
(``ln_1``, ``attn``, ``ln_2``, ``mlp.c_fc``, ``mlp.c_proj``) so ECG-CoCa weights map directly.

``arch.output`` chooses where the tokens are taken: ``ln_post`` (after the final LayerNorm, as
ECG-CoCa's own token output) or ``pre_ln_post`` (the last transformer block's output, which is what
GEM feeds its LLM: ECG-CoCa's ``output_last_transformer_layer=True``).
"""
from __future__ import annotations

import math
from collections import OrderedDict

import torch
from torch import nn

from ..errors import ConfigError
from ..registry import ECG_ENCODERS
from .base import ECGEncoder


class _Block(nn.Module):
    def __init__(self, width: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.ln_1 = nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.ln_2 = nn.LayerNorm(width)
        hidden = int(width * mlp_ratio)
        self.mlp = nn.Sequential(OrderedDict(
            c_fc=nn.Linear(width, hidden), gelu=nn.GELU(), c_proj=nn.Linear(hidden, width)
        ))

    def forward(self, x):
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.ln_2(x))


OUTPUTS = ("ln_post", "pre_ln_post")  # after the final LayerNorm | the last block's output (GEM)


@ECG_ENCODERS.register("vit1d")
class ViT1D(ECGEncoder):
    default_arch = dict(width=768, layers=12, heads=12, patch_size=50, mlp_ratio=4.0,
                        output_tokens="cls_patch", output="ln_post")
    tiny_arch = dict(width=64, layers=2, heads=4, patch_size=50,
                     _signal=dict(fs=100.0, n_samples=1000))
    default_signal = dict(fs=500.0, n_samples=5000, normalisation="none")
    tiny_keeps = ("output_tokens", "output", "patch_size")

    @classmethod
    def tiny_match_width(cls, arch: dict, width: int) -> None:
        arch["width"], arch["heads"] = width, math.gcd(width, 4)

    def __init__(self, arch: dict, signal_spec):
        super().__init__(arch, signal_spec)
        a = self.arch
        a.setdefault("output", "ln_post")  # models saved before the option existed
        if signal_spec.n_samples % a["patch_size"]:
            raise ConfigError(
                f"model.ecg: signal length {signal_spec.n_samples} is not a multiple of "
                f"patch_size {a['patch_size']}"
            )
        if a["width"] % a["heads"]:
            raise ConfigError(f"model.ecg.arch: width {a['width']} not divisible by heads {a['heads']}")
        if a["output_tokens"] not in ("cls_patch", "patch", "cls"):
            raise ConfigError(
                f"model.ecg.arch.output_tokens: {a['output_tokens']!r} is not one of cls_patch, patch, cls"
            )
        if a["output"] not in OUTPUTS:
            raise ConfigError(f"model.ecg.arch.output: {a['output']!r} is not one of {', '.join(OUTPUTS)}")
        n_patches = signal_spec.n_samples // a["patch_size"]
        width = a["width"]
        self.conv1 = nn.Conv1d(signal_spec.n_leads, width, a["patch_size"], a["patch_size"], bias=False)
        self.class_embedding = nn.Parameter(torch.randn(width) * width**-0.5)
        self.positional_embedding = nn.Parameter(torch.randn(n_patches + 1, width) * width**-0.5)
        self.ln_pre = nn.LayerNorm(width)
        self.blocks = nn.ModuleList(_Block(width, a["heads"], a["mlp_ratio"]) for _ in range(a["layers"]))
        self.ln_post = nn.LayerNorm(width)
        self.hidden_size = width
        self.num_tokens = {"cls_patch": n_patches + 1, "patch": n_patches, "cls": 1}[a["output_tokens"]]

    def init_extra_parameters(self, init) -> None:
        scale = self.hidden_size**-0.5
        init.normal_(self.class_embedding, std=scale)
        init.normal_(self.positional_embedding, std=scale)

    def forward(self, signals: torch.Tensor) -> torch.Tensor:
        x = self.conv1(signals.to(self.conv1.weight.dtype)).transpose(1, 2)  # [B, P, W]
        cls = self.class_embedding.expand(x.shape[0], 1, -1).to(x.dtype)
        x = torch.cat([cls, x], dim=1) + self.positional_embedding.to(x.dtype)
        x = self.ln_pre(x)
        for block in self.blocks:
            x = block(x)
        if self.arch["output"] == "ln_post":
            x = self.ln_post(x)
        mode = self.arch["output_tokens"]
        return x if mode == "cls_patch" else (x[:, 1:] if mode == "patch" else x[:, :1])

    def map_pretrained_names(self, state: dict) -> dict:
        # A whole CoCa / CLIP checkpoint holds the 1D tower under "visual." (open_clip), "ecg."
        # (ECG-Chat's ECG-CoCa) or "ecg_encoder." (a gemfactory model), next to a text tower whose
        # top-level names would collide with the tower's: keep only the tower's keys.
        state = {k.removeprefix("module."): v for k, v in state.items()}
        for prefix in ("visual.", "ecg.", "ecg_encoder."):
            if any(k.startswith(prefix) for k in state):
                state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
                break
        block = "transformer.resblocks."
        return {("blocks." + k[len(block):] if k.startswith(block) else k): v for k, v in state.items()}
