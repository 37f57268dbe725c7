"""Read WFDB ECG records into the exact array an encoder expects (its ``SignalSpec``).

``read_ecg`` reads a record (``.hea`` + ``.dat``/``.mat``) with wfdb, converts units to mV, maps
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
from .wfdb_fast import Header, read_header, read_physical

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
_RECORD_SUFFIXES = (".hea", ".dat", ".mat")


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


def _header(record: str):
    if not os.path.isfile(record + ".hea"):
        raise ECGError(f"ECG record not found: {record}.hea (expected a WFDB header next to .dat/.mat)")
    h = read_header(record)  # the common formats without wfdb's slow parser; None: ask wfdb
    if h is not None:
        return _checked_fs(record, h)
    try:
        h = wfdb.rdheader(record)
    except Exception as e:  # wfdb raises assorted errors for malformed headers
        raise ECGError(f"ECG record {record}: cannot parse header {record}.hea ({e})") from None
    return _checked_fs(record, h)


def _checked_fs(record: str, h):
    if not (h.fs is not None and math.isfinite(float(h.fs)) and float(h.fs) > 0):
        shown = f"{h.fs:g}" if isinstance(h.fs, (int, float)) else repr(h.fs)
        raise ECGError(f"ECG record {record}: sampling frequency {shown} in {record}.hea; expected a "
                       f"positive number of Hz")
    return h


def inspect_record(record_path) -> dict:
    """Header facts of a record without reading its signal: fs, n_samples, leads, units."""
    record = _record_name(record_path)
    h = _header(record)
    return {"fs": float(h.fs), "n_samples": int(h.sig_len or 0), "leads": list(h.sig_name or []),
            "units": list(h.units or [])}


def read_ecg(record_path, spec: SignalSpec, *, on_derive: str = "allow",
             stats: ECGStats | None = None) -> np.ndarray:
    """Read a WFDB record as float32 ``(spec.n_leads, spec.n_samples)`` in the spec's lead order.

    ``on_derive="refuse"`` forbids deriving missing limb leads even when the spec allows it.
    """
    if on_derive not in ("allow", "refuse"):
        raise ECGError(f"read_ecg: on_derive must be 'allow' or 'refuse', got {on_derive!r}")
    record = _record_name(record_path)
    h = _header(record)
    rec_leads = list(h.sig_name or [])
    if not rec_leads:
        raise ECGError(f"ECG record {record}: header lists no signals; expected ECG leads")

    # --- lead mapping: spec lead -> record channel, or derived from I and II
    index: dict[str, int] = {}
    for ch, name in enumerate(rec_leads):
        index.setdefault(_lead_key(name), ch)
    missing = [lead for lead in spec.leads if _lead_key(lead) not in index]
    can_derive = spec.allow_derived_leads and on_derive == "allow"
    derivable = "i" in index and "ii" in index and all(
        canonical_lead(lead) in DERIVED_LEADS for lead in missing)
    if missing and not (can_derive and derivable):
        why = ""
        if derivable:
            why = " (derivable from I and II, but derived leads are disabled)"
        raise ECGError(f"ECG record {record}: missing leads {missing} required by the signal spec "
                       f"{list(spec.leads)}{why}; the record has leads {rec_leads}")
    derive = bool(missing)
    needed_keys = sorted({_lead_key(lead) for lead in spec.leads if lead not in missing}
                         | ({"i", "ii"} if derive else set()), key=lambda k: index[k])
    channels = [index[k] for k in needed_keys]

    # --- resampling ratio and how many input samples are enough
    ratio = Fraction(float(spec.fs) / float(h.fs)).limit_denominator(1000)
    up, down = ratio.numerator, ratio.denominator
    resample = ratio != 1
    # enough input for n_samples outputs, plus the filter half-length and a 1 s margin
    need = math.ceil(spec.n_samples * down / up) + math.ceil(10 * max(up, down) / up) + int(h.fs) + 1
    sampto = need if h.sig_len and need < h.sig_len else None

    # --- read (physical values)
    try:
        if isinstance(h, Header):
            sig, units = read_physical(h, channels, sampto), [h.units[ch] for ch in channels]
        else:
            rec = wfdb.rdrecord(record, channels=channels, sampto=sampto)
            sig, units = (None if rec.p_signal is None else rec.p_signal.T), rec.units  # (channels, samples)
        expected_len = sampto or h.sig_len or (0 if sig is None else sig.shape[1])
        if sig is None or sig.shape != (len(channels), expected_len) or not expected_len:
            raise ValueError(f"got shape {None if sig is None else sig.shape[::-1]}, "
                             f"expected {(expected_len, len(channels))}")
    except Exception as e:  # wfdb raises OSError/ValueError/IndexError/... for bad signal files
        files = sorted(set(h.file_name or []))
        raise ECGError(f"ECG record {record}: signal file(s) {files} missing, truncated or corrupt "
                       f"({type(e).__name__}: {e}); expected {h.sig_len} samples x "
                       f"{len(rec_leads)} leads") from None
    sig = np.ascontiguousarray(sig, dtype=np.float64)
    full_out = math.ceil((h.sig_len or sig.shape[1]) * up / down)

    # --- units -> mV
    for row, ch in enumerate(channels):
        unit = (units[row] if units else None) or "mV"
        factor = _TO_MV.get(unit.strip().lower())
        if factor is None:
            raise ECGError(f"ECG record {record}: lead {rec_leads[ch]} has unknown units {unit!r}; "
                           f"expected one of mV, uV, µV, V")
        if factor != 1.0:
            sig[row] *= factor

    # --- NaN / inf
    bad = ~np.isfinite(sig)
    if bad.any():
        dead = [rec_leads[ch] for row, ch in enumerate(channels) if bad[row].all()]
        if dead:
            raise ECGError(f"ECG record {record}: leads {dead} contain no finite samples "
                           f"(all NaN/missing); expected a measured signal")
        sig[bad] = 0.0

    # --- assemble spec lead order (deriving when needed)
    rows = {k: sig[r] for r, k in enumerate(needed_keys)}
    out = np.stack([DERIVED_LEADS[canonical_lead(lead)](rows["i"], rows["ii"]) if lead in missing
                    else rows[_lead_key(lead)] for lead in spec.leads])
    if np.all(np.ptp(out, axis=1) == 0):
        raise ECGError(f"ECG record {record}: all leads {list(spec.leads)} are flat-line "
                       f"(constant); expected a measured ECG")

    if resample:
        from scipy.signal import resample_poly  # heavy import (~1-2 s): only when resampling

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

    if stats is not None:
        stats.records += 1
        stats.resampled += resample
        stats.derived += derive
        stats.padded += full_out < n
        stats.cropped += full_out > n
        stats.nan_replaced += bool(bad.any())
    return np.ascontiguousarray(out, dtype=np.float32)


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
