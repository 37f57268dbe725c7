"""WFDB records below lead mapping and resampling: header facts (``record_info``) and physical
samples (``read_signals``) of single- and multi-segment records.

Two paths give the same numbers as ``wfdb.rdrecord(..., physical=True, m2s=True)``:
- the fast path: ``wfdb_fast`` for the common single-segment formats, and multi-segment records
  assembled here segment by segment (each segment through the fast path where it applies);
- the wfdb path (``fast=False``, or whatever the fast path declines): wfdb's own ``rdrecord``.
Units and signal names come from the header bytes decoded as UTF-8, else latin-1, on both paths:
wfdb reads headers as ASCII and drops other bytes, so its ``µV`` arrives as ``V``.
Signals with several samples per frame are returned unsmoothed at ``fs * samples_per_frame``
(wfdb's ``smooth_frames=False``): averaging a frame would low-pass the ECG.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

import numpy as np
import wfdb

from ..errors import ECGError
from .wfdb_fast import (
    Header,
    header_lines,
    read_header,
    read_physical,
    signal_line_fields,
)


@dataclass
class RecordInfo:
    """What a record's header says, whichever path parsed it."""

    record: str
    fs: float
    sig_len: int | None
    sig_name: list[str]
    units: list[str | None]
    samps_per_frame: list[int]
    file_name: list[str] = field(default_factory=list)
    fast: bool = True
    fast_header: Header | None = None  # where the fast path reads this single-segment record
    segments: list[tuple[str | None, int]] | None = None  # multi-segment: (record or None for a gap, length)
    layout: str | None = None  # multi-segment: "fixed" or "variable"

    @property
    def path(self) -> str:
        """Which reader ``read_signals`` uses: fast, fast-segments or wfdb."""
        if self.segments is not None:
            return "fast-segments" if self.fast else "wfdb"
        return "fast" if self.fast_header is not None else "wfdb"


def record_info(record: str, *, fast: bool = True) -> RecordInfo:
    """The header of ``record`` (path without extension); ``fast=False`` parses it with wfdb."""
    hea = record + ".hea"
    if not os.path.isfile(hea):
        edf = record if record.lower().endswith(".edf") else record + ".edf"
        if os.path.isfile(edf):
            raise ECGError(f"ECG record {record}: EDF is not supported: {edf} is an EDF file; gemfactory "
                           f"reads WFDB records (NAME.hea with its .dat/.mat); convert it to WFDB first "
                           f"(e.g. wfdb.io.convert.edf.read_edf(...).wrsamp())")
        raise ECGError(f"ECG record not found: {hea} (expected a WFDB header next to .dat/.mat)")
    try:
        lines = header_lines(hea)
    except OSError as e:
        raise ECGError(f"ECG record {record}: cannot read header {hea} ({e})") from None
    if not lines or not lines[0].split():
        raise ECGError(f"ECG record {record}: header {hea} has no record line; expected "
                       f"'NAME N_SIGNALS FS N_SAMPLES'")
    multi = "/" in lines[0].split()[0]
    info = _multi_info(record, fast) if multi else _single_info(record, lines, fast)
    if not (info.fs is not None and math.isfinite(float(info.fs)) and float(info.fs) > 0):
        shown = f"{info.fs:g}" if isinstance(info.fs, (int, float)) else repr(info.fs)
        raise ECGError(f"ECG record {record}: sampling frequency {shown} in {hea}; expected a "
                       f"positive number of Hz")
    return info


def _wfdb_header(record: str, **kwargs):
    try:
        return wfdb.rdheader(record, **kwargs)
    except Exception as e:  # wfdb raises assorted errors for malformed headers
        raise ECGError(f"ECG record {record}: cannot parse header {record}.hea "
                       f"({type(e).__name__}: {e})") from None


def _written_fields(record: str, n_sig: int) -> tuple[list[str], list[str]]:
    """(units, names) of the first ``n_sig`` signal lines, decoded from the header bytes."""
    fields = [signal_line_fields(line) for line in header_lines(record + ".hea")[1:1 + n_sig]]
    return [u for u, _ in fields], [d for _, d in fields]


def _single_info(record: str, lines: list[str], fast: bool) -> RecordInfo:
    h = read_header(record) if fast else None
    if h is not None:
        n = len(h.sig_name)
        return RecordInfo(record, h.fs, h.sig_len, list(h.sig_name), list(h.units), [1] * n,
                          list(h.file_name), fast=True, fast_header=h)
    w = _wfdb_header(record)
    n = int(w.n_sig or 0)
    units, names = _written_fields(record, n)
    return RecordInfo(record, w.fs, w.sig_len, names, list(units), list(w.samps_per_frame or [1] * n),
                      list(w.file_name or []), fast=fast)


def _multi_info(record: str, fast: bool) -> RecordInfo:
    w = _wfdb_header(record, rd_segments=True)
    folder = os.path.dirname(record)
    segments = [(None if name == "~" else os.path.join(folder, name), int(length))
                for name, length in zip(w.seg_name, w.seg_len)]
    first = segments[0][0]
    if first is None:
        raise ECGError(f"ECG record {record}: multi-segment record whose first segment is a gap ('~'); "
                       f"expected a layout header or a segment with signals first")
    n = len(w.sig_name or [])
    units, names = _written_fields(first, n)
    spf = list(w.segments[0].samps_per_frame or [1] * n)
    if w.layout == "variable":  # units from the first segment that has the signal, else the layout
        found: dict[str, str] = {}
        for seg in [s for s, _ in segments[1:] if s is not None]:
            seg_units, seg_names = _written_fields(seg, _n_sig(seg))
            for name, unit in zip(seg_names, seg_units):
                found.setdefault(name, unit)
        units = [found.get(name, unit) for name, unit in zip(names, units)]
        segments = segments[1:]  # the layout header holds no samples
    return RecordInfo(record, w.fs, w.sig_len, names, units, spf, fast=fast, segments=segments,
                      layout=w.layout)


def _n_sig(record: str) -> int:
    head = header_lines(record + ".hea")[0].split()
    return int(head[1]) if len(head) > 1 and head[1].isdigit() else 0


def require_samples(info: RecordInfo) -> None:
    """Refuse records that hold no signal samples, each with its own reason."""
    record = info.record
    if info.file_name and all(f == "~" for f in info.file_name) and not info.sig_len:
        raise ECGError(f"ECG record {record}: {record}.hea is the layout header of a variable-layout "
                       f"multi-segment record (signals {info.sig_name}, 0 samples, no signal file); "
                       f"read the multi-segment record that lists it as its first segment")
    if not info.sig_name:
        raise ECGError(f"ECG record {record}: header lists no signals; expected ECG leads")
    if info.sig_len == 0:
        raise ECGError(f"ECG record {record}: header {record}.hea declares 0 samples; expected a "
                       f"recorded signal")


def frame_multiplier(info: RecordInfo, channels: list[int]) -> int:
    """The samples per frame shared by ``channels``; a mix of several is refused."""
    spf = sorted({int(info.samps_per_frame[ch]) for ch in channels})
    if len(spf) > 1:
        detail = ", ".join(f"{info.sig_name[ch]}: {info.samps_per_frame[ch]}" for ch in channels)
        raise ECGError(f"ECG record {info.record}: signals with different samples per frame are not "
                       f"supported together ({detail}); choose leads that share one sampling rate")
    return spf[0]


def read_signals(info: RecordInfo, channels: list[int] | None = None, sampto: int | None = None,
                 *, smooth_frames: bool = False) -> np.ndarray:
    """Physical values ``(len(channels), frames * samples_per_frame)`` of the first ``sampto``
    frames (all if None), float64, NaN where a sample is missing or a segment has no such signal.
    ``smooth_frames=True`` averages each frame's samples (one value per frame), as wfdb's default
    does; then signals of different samples per frame can be read together."""
    require_samples(info)
    channels = list(range(len(info.sig_name))) if channels is None else list(channels)
    spf = 1 if smooth_frames else frame_multiplier(info, channels)
    frames = info.sig_len if sampto is None or info.sig_len is None else min(sampto, info.sig_len)
    try:
        if info.segments is not None and info.fast:
            sig = _assemble(info, channels, frames, spf, smooth_frames)
        elif info.fast_header is not None:
            sig = read_physical(info.fast_header, channels, frames)
        else:
            sig = _read_with_wfdb(info, channels, frames, smooth_frames or spf == 1)
        expected = (len(channels), (frames if frames is not None else sig.shape[1] // spf) * spf)
        if sig.shape != expected or not expected[1]:
            raise ValueError(f"got {sig.shape[1]} samples x {sig.shape[0]} signals, expected "
                             f"{expected[1]} x {expected[0]}")
    except ECGError:
        raise
    except Exception as e:  # wfdb raises OSError/ValueError/IndexError/... for bad signal files
        files = sorted(set(info.file_name)) or [s for s, _ in info.segments or [] if s]
        raise ECGError(f"ECG record {info.record}: signal file(s) {files} missing, truncated or corrupt "
                       f"({type(e).__name__}: {e}); expected {info.sig_len} samples x "
                       f"{len(info.sig_name)} leads") from None
    return np.ascontiguousarray(sig, dtype=np.float64)


def _read_with_wfdb(info: RecordInfo, channels: list[int], frames: int | None, smooth: bool) -> np.ndarray:
    rec = wfdb.rdrecord(info.record, channels=channels, sampto=frames, physical=True, m2s=True,
                        smooth_frames=smooth)
    if smooth:
        if rec.p_signal is None:
            raise ValueError("wfdb returned no samples")
        return rec.p_signal.T
    return np.stack([np.asarray(s, dtype=np.float64) for s in rec.e_p_signal])


def _assemble(info: RecordInfo, channels: list[int], frames: int, spf: int, smooth: bool) -> np.ndarray:
    """A multi-segment record's channels, segment by segment; gaps and absent signals are NaN."""
    out = np.full((len(channels), frames * spf), np.nan)
    start = 0
    for seg_record, seg_len in info.segments:
        stop = min(start + seg_len, frames)
        if seg_record is not None and stop > start:
            seg = record_info(seg_record, fast=True)
            pairs = _segment_channels(info, seg, channels)
            if pairs:
                seg_channels = [c for _, c in pairs]
                seg_spf = [seg.samps_per_frame[c] for c in seg_channels]
                if seg.fs != info.fs or seg_spf != [info.samps_per_frame[channels[r]] for r, _ in pairs]:
                    raise ECGError(f"ECG record {info.record}: segment {seg_record} has fs {seg.fs:g} Hz and "
                                   f"samples per frame {seg_spf}; expected the record's {info.fs:g} Hz and "
                                   f"{[info.samps_per_frame[channels[r]] for r, _ in pairs]}")
                _check_units(info, seg, channels, pairs)
                values = read_signals(seg, seg_channels, stop - start, smooth_frames=smooth)
                out[[row for row, _ in pairs], start * spf:stop * spf] = values
        start += seg_len
        if start >= frames:
            break
    return out


def _segment_channels(info: RecordInfo, seg: RecordInfo, channels: list[int]) -> list[tuple[int, int]]:
    """(output row, segment channel) of the wanted channels that the segment holds."""
    if info.layout == "fixed":
        return [(row, ch) for row, ch in enumerate(channels) if ch < len(seg.sig_name)]
    return [(row, seg.sig_name.index(info.sig_name[ch])) for row, ch in enumerate(channels)
            if info.sig_name[ch] in seg.sig_name]


def _check_units(info: RecordInfo, seg: RecordInfo, channels: list[int], pairs) -> None:
    for row, seg_ch in pairs:
        ch = channels[row]
        if seg.units[seg_ch] != info.units[ch]:
            raise ECGError(f"ECG record {info.record}: signal {info.sig_name[ch]} is in "
                           f"{info.units[ch]} in the first segment holding it but in {seg.units[seg_ch]} "
                           f"in segment {seg.record}; units that change between segments are not supported")
