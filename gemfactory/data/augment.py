"""ECG augmentation of training samples (the recipe's ``data.augment``; schema in
:mod:`gemfactory.config.augment`).

Applied to the encoder input tensor [leads, samples] of a training sample, in this order: time
shift, crop, gain, baseline wander, noise, lead dropout (last, so the dropped leads are exactly
zero). Each step happens with its own probability; a sample's draws come from
``(seed, epoch, sample id)``, so a rerun or a resumed run sees the same augmented inputs, and
every epoch sees new ones. Evaluation, chat and the app never augment: only the trainer gives
the processor an :class:`ECGAugmenter`.
"""
from __future__ import annotations

import zlib

import numpy as np
import torch

from ..config import AugmentConfig


class ECGAugmenter:
    """Callable ``(ecg tensor, sample id) -> augmented copy``; ``epoch`` is set by the trainer."""

    def __init__(self, config: AugmentConfig, fs: float, seed: int = 0):
        self.config = config
        self.fs = float(fs)
        self.seed = int(seed)
        self.epoch = 0

    @classmethod
    def from_config(cls, config: AugmentConfig, signal_spec, seed: int = 0) -> "ECGAugmenter | None":
        """An augmenter when any augmentation is on and the model reads ECGs, else None."""
        if signal_spec is None or not config.enabled:
            return None
        return cls(config, signal_spec.fs, seed)

    def rng(self, item_id: str) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch, zlib.crc32(str(item_id).encode("utf-8"))])

    def __call__(self, ecg: torch.Tensor, item_id: str) -> torch.Tensor:
        return torch.from_numpy(self.apply(ecg.numpy(), self.rng(item_id))).to(ecg.dtype)

    def apply(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """``x`` (leads, samples) augmented with ``rng``; ``x`` itself is left unchanged."""
        c = self.config
        x = np.array(x, dtype=np.float64)
        steps = ((c.time_shift.p, self._shift), (c.crop.p, self._crop), (c.gain.p, self._gain),
                 (c.baseline_wander.p, self._wander), (c.noise.p, self._noise),
                 (c.lead_dropout.p, self._drop_leads))
        for p, step in steps:
            if p > 0 and rng.random() < p:
                x = step(x, rng)
        return x

    def _shift(self, x, rng):
        most = int(round(self.config.time_shift.max_s * self.fs))
        k = int(rng.integers(-most, most + 1)) if most else 0
        out = np.zeros_like(x)
        if k >= 0:
            out[:, k:] = x[:, :x.shape[1] - k]
        else:
            out[:, :k] = x[:, -k:]
        return out

    def _crop(self, x, rng):
        n = x.shape[1]
        shortest = min(n, max(1, int(round(self.config.crop.min_s * self.fs))))
        keep = int(rng.integers(shortest, n + 1))
        start = int(rng.integers(0, n - keep + 1))
        out = np.zeros_like(x)
        out[:, start:start + keep] = x[:, start:start + keep]
        return out

    def _gain(self, x, rng):
        lo, hi = self.config.gain.range
        return x * float(np.exp(rng.uniform(np.log(lo), np.log(hi))))

    def _wander(self, x, rng):
        cfg = self.config.baseline_wander
        t = np.arange(x.shape[1]) / self.fs
        freq = rng.uniform(*cfg.freq_hz)
        amp = rng.uniform(*cfg.amplitude, (x.shape[0], 1))
        phase = rng.uniform(0, 2 * np.pi, (x.shape[0], 1))
        return x + amp * np.sin(2 * np.pi * freq * t + phase)

    def _noise(self, x, rng):
        return x + rng.normal(0.0, rng.uniform(*self.config.noise.std), x.shape)

    def _drop_leads(self, x, rng):
        n_leads = x.shape[0]
        k = int(rng.integers(1, min(self.config.lead_dropout.max_leads, n_leads) + 1))
        x = x.copy()
        x[rng.choice(n_leads, size=k, replace=False)] = 0.0
        return x
