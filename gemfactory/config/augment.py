"""``data.augment``: ECG augmentation of training samples (schema and checks; applied by
:mod:`gemfactory.data.augment`).

Each augmentation has a probability ``p`` (0, the default, switches it off) and its own range;
they act on the encoder's input, i.e. after the SignalSpec's resampling and normalisation, so
amplitudes are in that input's units (z-scores under ``normalisation: zscore``). Only training
samples are augmented, reproducibly for ``training.seed``, sample id and epoch.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields

from .fields import help_field as _help


@dataclass
class GainAugment:
    p: float = _help("chance per sample", default=0.0)
    range: list[float] = _help("[low, high] factor multiplying every lead (log-uniform)",
                               default_factory=lambda: [0.5, 2.0])


@dataclass
class NoiseAugment:
    p: float = _help("chance per sample", default=0.0)
    std: list[float] = _help("[low, high] standard deviation of added white noise",
                             default_factory=lambda: [0.0, 0.2])


@dataclass
class WanderAugment:
    p: float = _help("chance per sample", default=0.0)
    amplitude: list[float] = _help("[low, high] amplitude of the added slow sine (each lead its own)",
                                   default_factory=lambda: [0.0, 0.5])
    freq_hz: list[float] = _help("[low, high] frequency of that sine in Hz", default_factory=lambda: [0.05, 0.5])


@dataclass
class ShiftAugment:
    p: float = _help("chance per sample", default=0.0)
    max_s: float = _help("largest shift in seconds, either way; the vacated part is zero", default=1.0)


@dataclass
class CropAugment:
    p: float = _help("chance per sample", default=0.0)
    min_s: float = _help("shortest window kept in seconds (a random window; the rest is zero, "
                         "as a short record is zero-padded)", default=5.0)


@dataclass
class LeadDropoutAugment:
    p: float = _help("chance per sample", default=0.0)
    max_leads: int = _help("at most this many leads (1..max_leads, chosen at random) are set to zero", default=6)


@dataclass
class AugmentConfig:
    gain: GainAugment = field(default_factory=GainAugment)
    noise: NoiseAugment = field(default_factory=NoiseAugment)
    baseline_wander: WanderAugment = field(default_factory=WanderAugment)
    time_shift: ShiftAugment = field(default_factory=ShiftAugment)
    crop: CropAugment = field(default_factory=CropAugment)
    lead_dropout: LeadDropoutAugment = field(default_factory=LeadDropoutAugment)

    @property
    def enabled(self) -> bool:
        return any(getattr(self, f.name).p > 0 for f in fields(self))

    def problems(self) -> list[tuple[str, str]]:
        """(key path under data.augment, what is wrong) for every bad value."""
        out = []
        for f in fields(self):
            part = getattr(self, f.name)
            if not 0 <= part.p <= 1:
                out.append((f"{f.name}.p", f"must be within [0, 1], got {part.p}"))
        for key, pair, low in (("gain.range", self.gain.range, 1e-6), ("noise.std", self.noise.std, 0.0),
                               ("baseline_wander.amplitude", self.baseline_wander.amplitude, 0.0),
                               ("baseline_wander.freq_hz", self.baseline_wander.freq_hz, 1e-6)):
            if len(pair) != 2 or not low <= pair[0] <= pair[1]:
                out.append((key, f"expected [low, high] with {low:g} <= low <= high, got {pair}"))
        if self.time_shift.max_s < 0:
            out.append(("time_shift.max_s", f"must be >= 0, got {self.time_shift.max_s}"))
        if self.crop.min_s <= 0:
            out.append(("crop.min_s", f"must be > 0, got {self.crop.min_s}"))
        if self.lead_dropout.max_leads < 1:
            out.append(("lead_dropout.max_leads", f"must be >= 1, got {self.lead_dropout.max_leads}"))
        return out
