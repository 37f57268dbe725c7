"""1D ResNet over 12-lead ECG: a convolutional baseline whose time steps become tokens.

A strided stem convolution and max-pool, then one stage per entry of ``widths``, each of
``blocks`` basic residual blocks (two convolutions, norm, ReLU) whose first block halves the
time axis. The last feature map [B, C, T'] is returned as T' tokens of width C. Full size:
widths 64-128-256-512, 12 x 5000 samples (10 s at 500 Hz) -> 79 tokens of width 512.

``norm: batch`` (default) is a classic BatchNorm1d: in training mode it normalises with the
batch's statistics and updates its running ones, in eval mode it uses the running statistics.
While every parameter of the encoder is frozen it keeps its BatchNorm layers in eval mode, so
a frozen pretrained encoder's statistics do not drift. ``norm: group`` (GroupNorm) behaves the
same in both modes and suits very small per-device batches.
"""
from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError
from ..registry import ECG_ENCODERS
from .base import ECGEncoder


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm1d(channels)
    groups = next(g for g in (32, 16, 8, 4, 2, 1) if channels % g == 0)
    return nn.GroupNorm(groups, channels)


def _conv_length(n: int, kernel: int, stride: int, padding: int) -> int:
    return (n + 2 * padding - kernel) // stride + 1


class _BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, norm: str):
        super().__init__()
        pad = kernel // 2
        self.conv1 = nn.Conv1d(c_in, c_out, kernel, stride, pad, bias=False)
        self.norm1 = _norm(norm, c_out)
        self.conv2 = nn.Conv1d(c_out, c_out, kernel, 1, pad, bias=False)
        self.norm2 = _norm(norm, c_out)
        self.act = nn.ReLU(inplace=True)
        self.shortcut = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv1d(c_in, c_out, 1, stride, bias=False), _norm(norm, c_out))

    def forward(self, x):
        h = self.act(self.norm1(self.conv1(x)))
        h = self.norm2(self.conv2(h))
        return self.act(h + self.shortcut(x))


@ECG_ENCODERS.register("resnet1d")
class ResNet1D(ECGEncoder):
    """1D ResNet (basic blocks, stride-2 stages); the last feature map's time steps are the tokens."""

    default_arch = dict(widths=[64, 128, 256, 512], blocks=[2, 2, 2, 2], kernel_size=7, stem_kernel=15,
                        stem_stride=2, stem_pool=True, norm="batch")
    tiny_arch = dict(widths=[16, 16, 32, 32], blocks=[1, 1, 1, 1],
                     _signal=dict(fs=100.0, n_samples=1000))
    default_signal = dict(fs=500.0, n_samples=5000, normalisation="none")
    tiny_keeps = ("norm", "stem_pool")

    def __init__(self, arch: dict, signal_spec):
        super().__init__(arch, signal_spec)
        a = self.arch
        widths, blocks = list(a["widths"]), list(a["blocks"])
        if not widths or len(widths) != len(blocks):
            raise ConfigError(
                f"model.ecg.arch: widths {widths} and blocks {blocks} must be non-empty lists of one entry per stage"
            )
        if any(not isinstance(v, int) or isinstance(v, bool) or v < 1 for v in widths + blocks):
            raise ConfigError(f"model.ecg.arch: widths {widths} and blocks {blocks} must hold positive integers")
        for key in ("kernel_size", "stem_kernel"):
            if not isinstance(a[key], int) or a[key] < 1 or a[key] % 2 == 0:
                raise ConfigError(f"model.ecg.arch.{key}: {a[key]!r} must be an odd positive integer")
        if not isinstance(a["stem_stride"], int) or a["stem_stride"] < 1:
            raise ConfigError(f"model.ecg.arch.stem_stride: {a['stem_stride']!r} must be a positive integer")
        if a["norm"] not in ("batch", "group"):
            raise ConfigError(f"model.ecg.arch.norm: {a['norm']!r} is not one of batch, group")

        stem_pad = a["stem_kernel"] // 2
        self.stem = nn.Sequential(
            nn.Conv1d(signal_spec.n_leads, widths[0], a["stem_kernel"], a["stem_stride"], stem_pad, bias=False),
            _norm(a["norm"], widths[0]),
            nn.ReLU(inplace=True),
            nn.MaxPool1d(3, 2, 1) if a["stem_pool"] else nn.Identity(),
        )
        stages, c_in = [], widths[0]
        for width, depth in zip(widths, blocks):
            stages.append(nn.Sequential(*(
                _BasicBlock(c_in if i == 0 else width, width, a["kernel_size"], 2 if i == 0 else 1, a["norm"])
                for i in range(depth)
            )))
            c_in = width
        self.stages = nn.ModuleList(stages)

        # exact token count: follow the length through every strided layer
        n = _conv_length(signal_spec.n_samples, a["stem_kernel"], a["stem_stride"], stem_pad)
        if a["stem_pool"]:
            n = _conv_length(n, 3, 2, 1)
        for _ in widths:
            n = _conv_length(n, a["kernel_size"], 2, a["kernel_size"] // 2)
        if n < 1:
            raise ConfigError(
                f"model.ecg: a signal of {signal_spec.n_samples} samples is too short for "
                f"{len(widths)} stride-2 stages"
            )
        self.num_tokens = n
        self.hidden_size = widths[-1]

    def train(self, mode: bool = True):
        super().train(mode)
        if mode and not any(p.requires_grad for p in self.parameters()):
            for m in self.modules():  # frozen: keep the running statistics as they are
                if isinstance(m, nn.BatchNorm1d):
                    m.eval()
        return self

    def forward(self, signals: torch.Tensor) -> torch.Tensor:
        x = self.stem(signals.to(self.stem[0].weight.dtype))
        for stage in self.stages:
            x = stage(x)
        return x.transpose(1, 2)  # [B, C, T'] -> [B, T', C]
