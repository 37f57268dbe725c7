"""Read WFDB ECG records into the exact array an encoder expects (its ``SignalSpec``).

``read_ecg`` reads a record (``.hea`` + ``.dat``/``.mat``, single- or multi-segment) through
``wfdb_read`` (the fast path or wfdb, with the same values), converts units to mV, maps
lead names case-insensitively (``avr``/``aVR``, ``MLII`` -> ``II``), derives limb leads from I and
II when allowed, resamples with ``scipy.signal.resample_poly``, crops/zero-pads to
``spec.n_samples`` and normalises. Every problem with a record is an ``ECGError`` naming it.
"""
from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import wfdb

from ..ecg.spec import SignalSpec
from ..errors import ECGError
from .wfdb_read import (
    RecordInfo,
    frame_multiplier,
    read_signals,
    record_info,
    require_samples,
)

LEAD_ALIASES: dict[str, str] = {
    **{name.lower(): name for name in
       ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")},
    "mlii": "II", "d1": "I", "d2": "II", "d3": "III",
}

# Limb leads computable from I and II (Einthoven / Goldberger).
DERIVED_LEADS = {
    "III": lambda i, ii: ii - i,
    "aVR": lambda i, ii: -(i + ii) / 2,
    "aVL": lambda i, ii: i - ii / 2,
    "aVF": lambda i, ii: ii - i / 2,
}

_TO_MV = {"mv": 1.0, "uv": 1e-3, "\u00b5v": 1e-3, "\u03bcv": 1e-3, "v": 1e3}
_RECORD_SUFFIXES = (".hea", ".dat", ".mat", ".edf")


def canonical_lead(name: str) -> str | None:
    """Canonical 12-lead name for ``name`` (case-insensitive, ``MLII`` -> ``II``), else None."""
    return LEAD_ALIASES.get(str(name).strip().lower())


def _lead_key(name: str) -> str:
    return (canonical_lead(name) or str(name).strip()).lower()


@dataclass
class ECGStats:
    """Counts of the decisions ``read_ecg`` took, so a dataset can log each once, with counts."""

    records: int = 0
    resampled: int = 0
    derived: int = 0
    padded: int = 0
    cropped: int = 0
    nan_replaced: int = 0

    def summary(self) -> str:
        return (f"ECG: {self.records} records read; {self.resampled} resampled, {self.derived} with "
                f"derived leads, {self.padded} zero-padded, {self.cropped} cropped, "
                f"{self.nan_replaced} with NaN/inf replaced by 0")


def _record_name(record_path) -> str:
    path = os.fspath(record_path)
    if path.endswith(_RECORD_SUFFIXES):
        path = path[:-4]
    return path


def _header(record: str, fast: bool = True) -> RecordInfo:
    return record_info(record, fast=fast)


def inspect_record(record_path) -> dict:
    """Header facts of a record without reading its signal: fs, n_samples, leads, units; for a
    multi-segment record also its layout and segment count."""
    record = _record_name(record_path)
    h = _header(record)
    facts = {"fs": float(h.fs), "n_samples": int(h.sig_len or 0), "leads": list(h.sig_name),
             "units": list(h.units), "samples_per_frame": list(h.samps_per_frame)}
    if h.segments is not None:
        facts.update(layout=h.layout, segments=len(h.segments))
    return facts


def read_ecg(record_path, spec: SignalSpec, *, on_derive: str = "allow",
             stats: ECGStats | None = None, fast: bool = True) -> np.ndarray:
    """Read a WFDB record as float32 ``(spec.n_leads, spec.n_samples)`` in the spec's lead order.

    ``on_derive="refuse"`` forbids deriving missing limb leads even when the spec allows it.
    ``fast=False`` parses and reads the record with wfdb only (the reference path).
    """
    if on_derive not in ("allow", "refuse"):
        raise ECGError(f"read_ecg: on_derive must be 'allow' or 'refuse', got {on_derive!r}")
    record = _record_name(record_path)
    h = _header(record, fast)
    require_samples(h)
    needed_keys, index, missing = _map_leads(record, h, spec, on_derive)
    channels = [index[k] for k in needed_keys]
    spf = frame_multiplier(h, channels)
    fs_in = float(h.fs) * spf  # signals with several samples per frame run at fs x spf
    n_in = h.sig_len * spf if h.sig_len else None

    # --- resampling ratio and how many input samples are enough
    ratio = Fraction(float(spec.fs) / fs_in).limit_denominator(1000)
    up, down = ratio.numerator, ratio.denominator
    resample = ratio != 1
    used = math.ceil(spec.n_samples * down / up)  # input samples that reach the output
    # enough input for n_samples outputs, plus the filter half-length and a 1 s margin
    need = used + math.ceil(10 * max(up, down) / up) + int(fs_in) + 1
    sampto = math.ceil(need / spf) if n_in and need < n_in else None
    sig = read_signals(h, channels, sampto)
    full_out = math.ceil((n_in or sig.shape[1]) * up / down)
    _to_mv(record, h, channels, sig)
    bad = _replace_non_finite(record, h, channels, sig, min(used, sig.shape[1]), fs_in)

    # --- assemble spec lead order (deriving when needed)
    rows = {k: sig[r] for r, k in enumerate(needed_keys)}
    out = np.stack([DERIVED_LEADS[canonical_lead(lead)](rows["i"], rows["ii"]) if lead in missing
                    else rows[_lead_key(lead)] for lead in spec.leads])
    if np.all(np.ptp(out, axis=1) == 0):
        raise ECGError(f"ECG record {record}: all leads {list(spec.leads)} are flat-line "
                       f"(constant); expected a measured ECG")
    out = _fit_to_spec(out, spec, up, down)
    if stats is not None:
        stats.records += 1
        stats.resampled += resample
        stats.derived += bool(missing)
        stats.padded += full_out < spec.n_samples
        stats.cropped += full_out > spec.n_samples
        stats.nan_replaced += bad
    return np.ascontiguousarray(out, dtype=np.float32)


def _map_leads(record: str, h: RecordInfo, spec: SignalSpec, on_derive: str):
    """(record channel keys to read in channel order, key -> channel, spec leads to derive)."""
    rec_leads = list(h.sig_name)
    index: dict[str, int] = {}
    for ch, name in enumerate(rec_leads):
        index.setdefault(_lead_key(name), ch)
    missing = [lead for lead in spec.leads if _lead_key(lead) not in index]
    can_derive = spec.allow_derived_leads and on_derive == "allow"
    derivable = "i" in index and "ii" in index and all(
        canonical_lead(lead) in DERIVED_LEADS for lead in missing)
    if missing and not (can_derive and derivable):
        why = " (derivable from I and II, but derived leads are disabled)" if derivable else ""
        raise ECGError(f"ECG record {record}: missing leads {missing} required by the signal spec "
                       f"{list(spec.leads)}{why}; the record has leads {rec_leads}")
    needed_keys = sorted({_lead_key(lead) for lead in spec.leads if lead not in missing}
                         | ({"i", "ii"} if missing else set()), key=lambda k: index[k])
    return needed_keys, index, missing


def _to_mv(record: str, h: RecordInfo, channels: list[int], sig: np.ndarray) -> None:
    for row, ch in enumerate(channels):
        unit = h.units[ch] or "mV"
        factor = _TO_MV.get(unit.strip().lower())
        if factor is None:
            raise ECGError(f"ECG record {record}: lead {h.sig_name[ch]} has unknown units {unit!r}; "
                           f"expected one of mV, uV, µV, V")
        if factor != 1.0:
            sig[row] *= factor


def _replace_non_finite(record: str, h: RecordInfo, channels: list[int], sig: np.ndarray,
                        used: int, fs_in: float) -> bool:
    """Set NaN/inf to 0; refuse a lead with no finite sample in the ``used`` samples that reach
    the output, saying whether it has finite samples further on."""
    bad = ~np.isfinite(sig)
    if not bad.any():
        return False
    empty = [(row, ch) for row, ch in enumerate(channels) if bad[row, :used].all()]
    if empty:
        full = read_signals(h, [ch for _, ch in empty])  # only on this error path: finite anywhere?
        finite = [np.flatnonzero(np.isfinite(values)) for values in full]
        dead = [h.sig_name[ch] for (_, ch), idx in zip(empty, finite) if not idx.size]
        if dead:
            raise ECGError(f"ECG record {record}: leads {dead} contain no finite samples "
                           f"(all NaN/missing); expected a measured signal")
        ch, idx = empty[0][1], finite[0]
        raise ECGError(f"ECG record {record}: lead {h.sig_name[ch]} has no finite samples in the "
                       f"{used} samples ({used / fs_in:g} s from the start) the signal spec uses, "
                       f"although {idx.size} of its {full.shape[1]} samples are finite (the first at "
                       f"sample {idx[0]}, {idx[0] / fs_in:g} s); expected a measured signal in that window")
    sig[bad] = 0.0
    return True


def _fit_to_spec(out: np.ndarray, spec: SignalSpec, up: int, down: int) -> np.ndarray:
    """Resample by up/down, crop or zero-pad to ``spec.n_samples`` and normalise."""
    if up != down:
        from scipy.signal import (
            resample_poly,  # heavy import (~1-2 s): only when resampling
        )

        out = resample_poly(out, up, down, axis=1, window=_lowpass(up, down))
    n = spec.n_samples
    valid = min(n, out.shape[1])
    out = out[:, :valid]
    if spec.normalisation == "zscore":
        centred = out - out.mean(axis=1, keepdims=True)
        std = centred.std(axis=1, keepdims=True)
        out = np.where(std < 1e-6, 0.0, centred / (std + 1e-6))  # flat leads stay 0
    elif spec.normalisation == "scale":
        out = out * spec.scale
    if valid < n:
        out = np.pad(out, ((0, 0), (0, n - valid)))
    return out


@functools.lru_cache(maxsize=32)
def _lowpass(up: int, down: int) -> np.ndarray:
    """resample_poly's default anti-aliasing filter (Kaiser, beta 5, 10 taps per rate), designed
    once per ratio instead of once per record."""
    from scipy.signal import firwin

    rate = max(up, down)
    return firwin(20 * rate + 1, 1.0 / rate, window=("kaiser", 5.0))


def write_ecg(record_path, signal_mv, fs: float, leads) -> None:
    """Write ``signal_mv`` (leads, samples) in mV as a WFDB format-16 record (1000 adu/mV).

    Values beyond +-32.767 mV are clipped; NaN is written as WFDB's missing-sample value.
    """
    record = Path(_record_name(record_path))
    sig = np.asarray(signal_mv, dtype=np.float64)
    leads = [str(lead) for lead in leads]
    if sig.ndim != 2 or sig.shape[0] != len(leads) or sig.shape[1] == 0:
        raise ECGError(f"write_ecg {record}: signal must be (leads={len(leads)}, samples>0), "
                       f"got shape {sig.shape}")
    record.parent.mkdir(parents=True, exist_ok=True)
    sig = np.clip(sig, -32.767, 32.767)  # -32768 is reserved for missing samples
    try:
        wfdb.wrsamp(record.name, fs=float(fs), units=["mV"] * len(leads), sig_name=leads,
                    p_signal=np.ascontiguousarray(sig.T), fmt=["16"] * len(leads),
                    adc_gain=[1000.0] * len(leads), baseline=[0] * len(leads),
                    write_dir=str(record.parent))
    except (ValueError, OSError) as e:
        raise ECGError(f"write_ecg {record}: cannot write WFDB record ({e})") from None
