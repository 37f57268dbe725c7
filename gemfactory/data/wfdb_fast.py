"""A fast path for the common WFDB records: single-segment headers with format 16, 212, 80, 160,
61, 24 or 32 signal files (.dat, or .mat with a byte offset), one sample per frame, no skew.

wfdb's header parser spends tens of milliseconds per header (pandas lookups); this one parses the
same lines in microseconds and reads the samples with numpy. Anything it does not handle (other
formats, multi-segment records, skew, unusual header fields, anything malformed) returns None and
the caller goes through wfdb, so error messages and rare formats stay wfdb's. Physical values are
``(digital - baseline) / gain`` with the format's missing-sample code as NaN, as wfdb computes them.
Header bytes are decoded as UTF-8, else latin-1 (``header_text``), so ``µV`` survives either encoding.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

import numpy as np

DEFAULT_FS = 250.0
DEFAULT_GAIN = 200.0
MISSING = {"16": -32768, "212": -2048, "80": -128, "160": -32768, "61": -32768, "24": -8388608,
           "32": -2147483648}
_BYTES_PER_SAMPLE = {"16": 2.0, "212": 1.5, "80": 1.0, "160": 2.0, "61": 2.0, "24": 3.0, "32": 4.0}
# filename format[+offset] gain[(baseline)][/units] adcres adczero initval checksum blocksize description
_FORMAT = re.compile(r"^(16|212|80|160|61|24|32)(?:\+(\d+))?$")
_VIEWS = {"16": "<i2", "61": ">i2", "32": "<i4"}
_GAIN = re.compile(r"^([-+]?\d*\.?\d+(?:[eE][-+]?\d+)?)(?:\(([-+]?\d+)\))?(?:/(\S+))?$")


@dataclass
class Header:
    record: str
    fs: float
    sig_len: int
    sig_name: list[str] = field(default_factory=list)
    units: list[str] = field(default_factory=list)
    file_name: list[str] = field(default_factory=list)
    fmt: list[str] = field(default_factory=list)
    byte_offset: list[int] = field(default_factory=list)
    adc_gain: list[float] = field(default_factory=list)
    baseline: list[int] = field(default_factory=list)


def header_text(path: str) -> str:
    """A header file's text: UTF-8 when its bytes are valid UTF-8, else latin-1 (every byte is)."""
    with open(path, "rb") as fh:
        raw = fh.read()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def header_lines(path: str) -> list[str]:
    """The non-comment, non-empty lines of a header, stripped."""
    lines = [ln.strip() for ln in header_text(path).splitlines()]
    return [ln for ln in lines if ln and not ln.startswith("#")]


def signal_line_fields(line: str) -> tuple[str, str]:
    """(units, description) of a signal line as written: units default to mV, as in wfdb."""
    parts = line.split(maxsplit=8)
    gain = _GAIN.match(parts[2]) if len(parts) > 2 else None
    units = gain.group(3) if gain is not None and gain.group(3) else "mV"
    return units, parts[8].strip() if len(parts) > 8 else ""


def read_header(record: str) -> Header | None:
    """The header of ``record`` (path without extension), or None when the fast path does not apply."""
    try:
        lines = header_lines(record + ".hea")
    except OSError:
        return None
    if not lines:
        return None
    head = lines[0].split()
    if len(head) < 4 or "/" in head[0] or not head[1].isdigit():  # multi-segment, or no length
        return None
    try:
        fs = float(head[2].split("/")[0])  # "fs/counter(base)": the counter frequency is not needed
        sig_len = int(head[3])
    except ValueError:
        return None
    n_sig = int(head[1])
    if n_sig == 0 or len(lines) < 1 + n_sig or sig_len <= 0:
        return None
    h = Header(record, fs, sig_len)
    for line in lines[1:1 + n_sig]:
        parts = line.split(maxsplit=8)
        if len(parts) < 3:
            return None
        fmt, gain = _FORMAT.match(parts[1]), _GAIN.match(parts[2])
        if fmt is None or gain is None or os.sep in parts[0] or "/" in parts[0]:
            return None
        adc_gain = float(gain.group(1))
        adc_zero = int(parts[4]) if len(parts) > 4 and parts[4].lstrip("-+").isdigit() else 0
        if adc_gain == 0:  # wfdb substitutes its default gain: leave such records to wfdb
            return None
        h.file_name.append(parts[0])
        h.fmt.append(fmt.group(1))
        h.byte_offset.append(int(fmt.group(2) or 0))
        h.adc_gain.append(adc_gain)
        h.baseline.append(int(gain.group(2)) if gain.group(2) is not None else adc_zero)
        units, description = signal_line_fields(line)
        h.units.append(units)
        h.sig_name.append(description)
    if len(lines) > 1 + n_sig and not lines[1 + n_sig].startswith("#"):
        return None  # more signal lines than declared
    # signals of one file must share its format and offset (they are interleaved frame by frame)
    for name in set(h.file_name):
        members = [i for i, f in enumerate(h.file_name) if f == name]
        if len({(h.fmt[i], h.byte_offset[i]) for i in members}) != 1 or members != list(
                range(members[0], members[0] + len(members))):
            return None
    return h


def read_physical(h: Header, channels: list[int], sampto: int | None) -> np.ndarray:
    """Physical values [len(channels), samples] of the first ``sampto`` samples (all if None).
    Raises ValueError for a signal file shorter than the header says, OSError if one is missing."""
    n = min(sampto or h.sig_len, h.sig_len)
    folder = os.path.dirname(h.record)
    out = np.empty((len(channels), n), dtype=np.float64)
    by_file: dict[str, list[int]] = {}
    for ch in range(len(h.file_name)):
        by_file.setdefault(h.file_name[ch], []).append(ch)
    wanted = {ch: row for row, ch in enumerate(channels)}
    for name, members in by_file.items():
        picked = [(pos, ch) for pos, ch in enumerate(members) if ch in wanted]
        if not picked:
            continue
        fmt, offset = h.fmt[members[0]], h.byte_offset[members[0]]
        digital = _read_digital(os.path.join(folder, name), fmt, offset, n, len(members))
        rows = np.ascontiguousarray(digital[:, [pos for pos, _ in picked]].T)  # [picked, n], one copy
        values = rows.astype(np.float64)
        values -= np.array([[h.baseline[ch]] for _, ch in picked], dtype=np.float64)
        values /= np.array([[h.adc_gain[ch]] for _, ch in picked])
        missing = rows == MISSING[fmt]
        if missing.any():
            values[missing] = np.nan
        out[[wanted[ch] for _, ch in picked]] = values
    return out


def _read_digital(path: str, fmt: str, offset: int, n: int, width: int) -> np.ndarray:
    count = n * width
    n_bytes = int(np.ceil(count * _BYTES_PER_SAMPLE[fmt]))
    with open(path, "rb") as fh:
        fh.seek(offset)
        raw = np.frombuffer(fh.read(n_bytes), dtype=np.uint8)
    if raw.size < n_bytes:
        raise ValueError(f"{path} holds {raw.size} bytes of samples after offset {offset}, "
                         f"expected at least {n_bytes}")
    if fmt in _VIEWS:
        samples = raw.view(_VIEWS[fmt])
    elif fmt == "80":  # 8-bit offset binary
        samples = raw.astype(np.int16) - 128
    elif fmt == "160":  # 16-bit offset binary
        samples = raw.view("<u2").astype(np.int32) - 32768
    elif fmt == "24":  # 24-bit two's complement, little-endian
        b = raw.reshape(-1, 3).astype(np.int32)
        samples = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        samples[samples >= 1 << 23] -= 1 << 24
    else:  # 212: two 12-bit samples in three bytes
        triples = np.pad(raw, (0, (-raw.size) % 3)).reshape(-1, 3).astype(np.int64)
        samples = np.empty(triples.shape[0] * 2, dtype=np.int64)
        samples[0::2] = triples[:, 0] | ((triples[:, 1] & 0x0F) << 8)
        samples[1::2] = triples[:, 2] | ((triples[:, 1] & 0xF0) << 4)
        samples[samples > 2047] -= 4096
    return samples[:count].reshape(n, width)
