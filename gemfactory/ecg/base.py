"""Interface of ECG encoders: signals [B, leads, samples] -> tokens [B, N, D]."""
from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError
from ..weights import load_state_file
from .spec import SignalSpec


class ECGEncoder(nn.Module):
    """Subclasses set ``hidden_size`` and ``num_tokens`` and declare their :class:`SignalSpec`.

    ``default_arch`` is the full-size architecture, ``tiny_arch`` the test twin (selected with
    ``arch: {tiny: true}``); ``default_signal`` the spec the full-size model was trained on.
    """

    default_arch: dict = {}
    tiny_arch: dict = {}
    default_signal: dict = {}
    tiny_keeps: tuple[str, ...] = ()  # arch keys that are choices, not sizes: the tiny twin keeps them
    FULL_SAMPLES = 5000  # the full-size 10 s x 500 Hz spec, which the twin replaces by its own

    def __init__(self, arch: dict, signal_spec: SignalSpec):
        super().__init__()
        self.arch = dict(arch)
        self.signal_spec = signal_spec
        self.hidden_size = 0
        self.num_tokens = 0

    @classmethod
    def resolve(cls, arch: dict, signal: dict) -> tuple[dict, SignalSpec]:
        """Full architecture dict and signal spec for recipe overrides (``tiny: true`` picks the twin)."""
        arch, base = cls.split_arch(arch)
        merged = {**cls.default_arch, **base, **arch}
        spec = SignalSpec.from_dict({**cls.default_signal, **base.get("_signal", {}), **signal})
        merged.pop("_signal", None)
        return merged, spec

    @classmethod
    def split_arch(cls, arch: dict) -> tuple[dict, dict]:
        """(the recipe's arch without ``tiny``, the defaults it goes over: tiny twin or full size)."""
        arch = dict(arch)
        base = cls.tiny_arch if arch.pop("tiny", False) else cls.default_arch
        unknown = set(arch) - set(cls.default_arch)
        if unknown:
            raise ConfigError(
                f"model.ecg.arch: unknown keys {sorted(unknown)} for {cls.__name__}; "
                f"expected some of {sorted(cls.default_arch)}"
            )
        return arch, base

    @classmethod
    def tiny_entry(cls, entry: dict) -> dict:
        """The ``model.ecg`` entry of the tiny twin: ``tiny: true`` plus the recipe's choices
        (``tiny_keeps``), the signal spec kept unless it is the full-size default."""
        full_arch, spec = cls.resolve(entry["arch"], entry["signal"])  # validates the recipe's keys
        signal = dict(entry["signal"])
        if spec.n_samples == cls.FULL_SAMPLES:
            signal.update(cls.tiny_arch.get("_signal", {}))
        n_samples = signal.get("n_samples", spec.n_samples)
        arch = {"tiny": True}
        for key in cls.tiny_keeps:
            if key not in entry["arch"]:
                continue
            if key == "patch_size" and n_samples % int(full_arch[key]):
                continue  # does not divide the twin's signal: the twin's own patch size
            arch[key] = full_arch[key]
        return {**entry, "path": None, "arch": arch, "signal": signal}

    @classmethod
    def tiny_match_width(cls, arch: dict, width: int) -> None:
        """Give the twin ``width``-wide tokens when an identity connector needs them (if it can)."""

    def load_pretrained(self, path: str) -> None:
        state = self.map_pretrained_names(load_state_file(path, key="model.ecg.path"))
        load_checked(self, state, path, "model.ecg.arch / model.ecg.signal", "")

    def map_pretrained_names(self, state: dict) -> dict:
        return state

    def forward(self, signals: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


def load_checked(module: nn.Module, state: dict, path: str, fits: str, whose: str) -> None:
    """Load ``state`` (from ``model.ecg.path``) into ``module``: tensors the module lacks are ignored;
    a shape that differs or a weight the file lacks is a one-line ConfigError."""
    own = module.state_dict()
    state = {k: v for k, v in state.items() if k in own}
    wrong = [f"{k}: {tuple(v.shape)} in the file, {tuple(own[k].shape)} here"
             for k, v in state.items() if tuple(v.shape) != tuple(own[k].shape)]
    if wrong:
        raise ConfigError(f"model.ecg.path: {path} does not fit {fits}: {len(wrong)} tensors differ in shape, "
                          f"e.g. {wrong[:3]}")
    missing, _ = module.load_state_dict(state, strict=False)
    if missing:
        raise ConfigError(f"model.ecg.path: {path} lacks weights for {len(missing)} parameters{whose}, "
                          f"e.g. {missing[:3]}")
