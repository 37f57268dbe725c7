"""``beat_lstm``: a bidirectional LSTM over beat-sized windows of a 12-lead ECG.

The record [B, leads, samples] is cut into windows of ``window_s`` seconds (0.8 s, about one beat;
the last window is zero-padded); the samples of all leads in a window are projected to ``width``
and the LSTM reads the windows in order. One token per window: 10 s -> 13 tokens of ``width``.
"""
from __future__ import annotations

import torch
from torch import nn

from gemfactory.ecg.base import ECGEncoder
from gemfactory.errors import ConfigError


class BeatLSTM(ECGEncoder):
    """Bidirectional LSTM over beat-sized windows, one token per window."""

    default_arch = dict(width=256, layers=2, window_s=0.8)
    tiny_arch = dict(width=32, layers=1, _signal=dict(fs=100.0, n_samples=1000))
    default_signal = dict(fs=500.0, n_samples=5000, normalisation="zscore")

    def __init__(self, arch: dict, signal_spec):
        super().__init__(arch, signal_spec)
        width, layers = self.arch["width"], self.arch["layers"]
        if not isinstance(width, int) or width < 2 or width % 2:
            raise ConfigError(f"model.ecg.arch.width: {width!r} must be an even integer >= 2 (two LSTM directions)")
        if not isinstance(layers, int) or layers < 1:
            raise ConfigError(f"model.ecg.arch.layers: {layers!r} must be a positive integer")
        self.window = round(self.arch["window_s"] * signal_spec.fs)
        if not 1 <= self.window <= signal_spec.n_samples:
            raise ConfigError(
                f"model.ecg.arch.window_s: {self.arch['window_s']!r} s is {self.window} samples at "
                f"{signal_spec.fs:g} Hz; expected 1 to {signal_spec.n_samples} samples (the signal length)"
            )
        self.embed = nn.Linear(signal_spec.n_leads * self.window, width)
        self.lstm = nn.LSTM(width, width // 2, layers, batch_first=True, bidirectional=True)
        self.norm = nn.LayerNorm(width)
        self.hidden_size = width
        self.num_tokens = -(-signal_spec.n_samples // self.window)

    def forward(self, signals: torch.Tensor) -> torch.Tensor:
        x = signals.to(self.embed.weight.dtype)
        x = nn.functional.pad(x, (0, self.num_tokens * self.window - x.shape[-1]))
        batch, leads, _ = x.shape
        windows = x.reshape(batch, leads, self.num_tokens, self.window).transpose(1, 2)
        tokens, _ = self.lstm(self.embed(windows.reshape(batch, self.num_tokens, leads * self.window)))
        return self.norm(tokens)
