"""WFDB fidelity: gemfactory's reader against wfdb itself, on wfdb-python's own sample records.

The seam is ``gemfactory.data.wfdb_read.read_signals`` (physical values before unit conversion,
lead mapping and resampling). Every record of tests/data/wfdb-sample (and the real records in
tests/data) either equals ``wfdb.rdrecord(record, physical=True, m2s=True)`` exactly on both
the fast path and the wfdb path, or raises one ECGError naming the unsupported feature.
Signals with several samples per frame are compared unsmoothed (``smooth_frames=False``, one group
of equal rate at a time) and frame-averaged (wfdb's default ``smooth_frames=True``, all at once).

``python tests/test_wfdb_corpus.py`` prints the table that docs/data.md shows.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import wfdb

from gemfactory.data.ecg_io import inspect_record, read_ecg
from gemfactory.data.wfdb_read import read_signals, record_info
from gemfactory.ecg.spec import SignalSpec
from gemfactory.errors import ECGError

DATA = Path(__file__).resolve().parent / "data"
SAMPLE = DATA / "wfdb-sample"
MIXED_SPF = "signals with different samples per frame are not supported together"
# record -> the feature its error must name (everything else must MATCH)
EXPECTED_ERRORS = {
    "multi-segment/s25047/3234460_layout": "is the layout header of a variable-layout multi-segment record",
    "test_edfann.edf": "EDF is not supported",
}


def corpus() -> list[str]:
    """Record names relative to tests/data (wfdb-sample/... and the real records beside it)."""
    names = [str(p.relative_to(SAMPLE))[:-4] for p in sorted(SAMPLE.rglob("*.hea"))]
    return ([f"wfdb-sample/{n}" for n in names] + ["wfdb-sample/test_edfann.edf"]
            + ["100", "100skew", "s0010_re", "JS00001"])


def short(name: str) -> str:
    return name.removeprefix("wfdb-sample/")


def reference(record: str, channels: list[int] | None, spf: int) -> np.ndarray:
    """wfdb's own physical samples (channels, samples); unsmoothed where frames hold several
    (spf > 1), frame-averaged as wfdb's default for spf 1 (a no-op where every signal has 1)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rec = wfdb.rdrecord(record, channels=channels, physical=True, m2s=True, smooth_frames=spf == 1)
    return rec.p_signal.T if spf == 1 else np.stack(rec.e_p_signal)


def spf_groups(record: str) -> list[list[int]]:
    spf = wfdb.rdheader(record, rd_segments=True)
    spf = (spf.segments[0] if isinstance(spf, wfdb.MultiRecord) else spf).samps_per_frame
    groups: dict[int, list[int]] = {}
    for ch, k in enumerate(spf):
        groups.setdefault(int(k), []).append(ch)
    return list(groups.values())


def check_record(name: str, fast: bool) -> tuple[str, str]:
    """(MATCH|ERROR, detail) of one record on one path; anything else raises (a crash)."""
    record = str(DATA / name)
    try:
        info = record_info(record, fast=fast)
        got = read_signals(info)
    except ECGError as e:
        message = str(e).replace(str(DATA) + "/", "")
        if MIXED_SPF not in message:
            return "ERROR", message
        # several samples-per-frame values: each group of equal rate, unsmoothed, and all
        # signals at once frame-averaged (wfdb's default) must match
        for group in spf_groups(record):
            want = reference(record, group, int(info.samps_per_frame[group[0]]))
            assert np.array_equal(read_signals(info, group), want, equal_nan=True), (name, group)
        want = reference(record, None, 1)
        assert np.array_equal(read_signals(info, smooth_frames=True), want, equal_nan=True), name
        return "MATCH", f"{info.path}; mixed samples per frame: per equal-rate group, and frame-averaged"
    spf = int(info.samps_per_frame[0])
    want = reference(record, list(range(len(info.sig_name))), spf)
    assert got.dtype == np.float64 and np.array_equal(got, want, equal_nan=True), (name, info.path)
    ref_header = wfdb.rdheader(record)
    if ref_header.sig_name is not None:
        assert info.sig_name == list(ref_header.sig_name), name
    # the first third too: sampto (in frames) honoured on both paths
    part = read_signals(info, None, max(1, want.shape[1] // spf // 3))
    np.testing.assert_array_equal(part, want[:, :part.shape[1]])
    return "MATCH", info.path


@pytest.mark.parametrize("name", corpus(), ids=short)
def test_record_matches_wfdb_or_names_what_is_unsupported(name):
    results = {fast: check_record(name, fast) for fast in (True, False)}
    (fast_status, fast_detail), (wfdb_status, wfdb_detail) = results[True], results[False]
    expected = EXPECTED_ERRORS.get(short(name))
    if expected is None:
        assert fast_status == wfdb_status == "MATCH", results
    else:
        assert fast_status == wfdb_status == "ERROR" and expected in fast_detail and expected in wfdb_detail
        assert fast_detail == wfdb_detail  # one message whichever path read the header


def test_multi_segment_records_match_and_describe_themselves():
    for name, layout in [("multi-segment/fixed1/v102s", "fixed"), ("multi-segment/041s/041s", "fixed"),
                         ("multi-segment/s25047/s25047-2704-05-04-10-44", "variable")]:
        status, detail = check_record(f"wfdb-sample/{name}", fast=True)
        assert status == "MATCH" and detail.startswith("fast-segments"), (name, detail)
        facts = inspect_record(SAMPLE / name)
        assert facts["layout"] == layout
    facts = inspect_record(SAMPLE / "multi-segment/s25047/s25047-2704-05-04-10-44")
    assert (facts["leads"], facts["units"], facts["segments"]) == (["II", "V", "ABP"], ["mV", "mV", "mmHg"], 19)
    facts = inspect_record(SAMPLE / "multi-segment/041s/041s")
    assert facts["leads"][:3] == ["III", "I", "V"] and facts["samples_per_frame"][:3] == [4, 4, 4]


def test_read_ecg_on_multi_segment_records_equals_wfdb_with_gaps_as_zero():
    record = SAMPLE / "multi-segment/s25047/s25047-2704-05-04-10-44"
    n = 543240
    x = read_ecg(record, SignalSpec(fs=125, leads=("V", "II"), n_samples=n))
    want = np.nan_to_num(reference(str(record), [1, 0], 1), nan=0.0).astype(np.float32)
    np.testing.assert_array_equal(x, want)
    # lead II starts after a 25740-sample gap: a 10 s window at the start has none of it
    with pytest.raises(ECGError) as e:
        read_ecg(record, SignalSpec(fs=125, leads=("II",), n_samples=1250))
    assert str(e.value) == (
        f"ECG record {record}: lead II has no finite samples in the 1250 samples (10 s from the start) "
        f"the signal spec uses, although 516778 of its 543240 samples are finite (the first at sample "
        f"25740, 205.92 s); expected a measured signal in that window")
    # 041s: leads III, I, V at 4 samples per frame are read at 500 Hz, unsmoothed
    record = SAMPLE / "multi-segment/041s/041s"
    x = read_ecg(record, SignalSpec(fs=500, leads=("I", "III"), n_samples=8000))
    want = reference(str(record), [1, 0], 4)
    assert np.isnan(want).any()  # a few missing samples, read as 0
    np.testing.assert_array_equal(x, np.nan_to_num(want, nan=0.0).astype(np.float32))


def corpus_table() -> str:
    """The markdown table of docs/data.md ("WFDB fidelity")."""
    rows = ["| record | feature | fast path | wfdb path |", "|---|---|---|---|"]
    for name in corpus():
        cells = []
        for fast in (True, False):
            status, detail = check_record(name, fast)
            cells.append(f"MATCH ({detail})" if status == "MATCH" else f"ERROR: {detail}")
        rows.append(f"| `{short(name)}` | {FEATURES.get(short(name), '')} | {cells[0]} | {cells[1]} |")
    return "\n".join(rows)


FEATURES = {
    "binformats": "formats 8, 16, 61, 80, 160, 212, 310, 311, 24, 32",
    "flacformats": "FLAC 508, 516, 524",
    "100_3chan": "212, odd sample count",
    "3000003_0003": "format 80",
    "03700181": "212x4 + skew, mixed samples per frame",
    "mixedsignals": "FLAC, mixed samples per frame",
    "test01_00s_frame": "samples per frame 2 (mixed)",
    "test01_00s_skew": "skew",
    "test01_00s_skewframe": "skew + samples per frame (mixed)",
    "a103l": ".mat, byte offset 24",
    "a103l-no-len": ".mat, no signal length",
    "multi-segment/fixed1/v102s": "multi-segment, fixed layout",
    "multi-segment/041s/041s": "multi-segment, fixed layout, 212x4 (mixed)",
    "multi-segment/s25047/s25047-2704-05-04-10-44": "multi-segment, variable layout, layout header, gaps",
    "multi-segment/s25047/3234460_layout": "layout header only",
    "test_edfann.edf": "EDF+",
    "100skew": "212 + skew",
    "JS00001": ".mat 16+24",
    "s0010_re": "two signal files",
}

if __name__ == "__main__":
    print(corpus_table())


# --- hand-made edge cases: headers written by hand, samples known independently of any reader

def both_paths(record) -> list[np.ndarray]:
    return [read_signals(record_info(str(record), fast=fast)) for fast in (True, False)]


def write_record(folder: Path, header: bytes, data: bytes, name: str = "r") -> Path:
    (folder / f"{name}.hea").write_bytes(header)
    (folder / f"{name}.dat").write_bytes(data)
    return folder / name


def digital(n: int, bits: int, seed: int = 0, width: int = 1) -> np.ndarray:
    """Random samples (n, width) inside the format's range, never its missing-sample code."""
    lo = -(1 << (bits - 1)) + 1
    return np.random.default_rng(seed).integers(lo, -lo, size=(n, width))


def test_skew_is_applied_on_both_paths(tmp_path):
    d = digital(1000, 16, width=2)
    r = write_record(tmp_path, b"r 2 500 1000\nr.dat 16 200 16 0 0 0 0 I\nr.dat 16:3 200 16 0 0 0 0 II\n",
                     d.astype("<i2").tobytes())
    want = np.full((2, 1000), np.nan)
    want[0], want[1, :997] = d[:, 0] / 200, d[3:, 1] / 200  # signal II is 3 frames late in the file
    for got in both_paths(r):
        np.testing.assert_array_equal(got, want)
    assert record_info(str(r)).path == "wfdb"  # the fast path declines skew


def test_samples_per_frame_read_unsmoothed_at_the_higher_rate(tmp_path):
    d = digital(2000, 16, width=2)  # 1000 frames x (2 samples of I, 2 of II)
    frames = np.concatenate([d[0::2, :1], d[1::2, :1], d[0::2, 1:], d[1::2, 1:]], axis=1)
    r = write_record(tmp_path, b"r 2 250 1000\nr.dat 16x2 100 16 0 0 0 0 I\nr.dat 16x2 100 16 0 0 0 0 II\n",
                     frames.astype("<i2").tobytes())
    want = np.stack([np.ravel(frames[:, 0:2]), np.ravel(frames[:, 2:4])]) / 100
    for got in both_paths(r):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(reference(str(r), [0, 1], 2), want)
    x = read_ecg(r, SignalSpec(fs=500, leads=("II", "I"), n_samples=2000))  # 250 Hz x 2 = 500 Hz
    np.testing.assert_array_equal(x, want[::-1].astype(np.float32))
    (tmp_path / "m.hea").write_bytes(b"m 2 250 1000\nr.dat 16x2 100 16 0 0 0 0 I\nr.dat 16 100 16 0 0 0 0 II\n")
    with pytest.raises(ECGError) as e:
        read_ecg(tmp_path / "m", SignalSpec(fs=500, leads=("I", "II"), n_samples=2000))
    assert str(e.value) == (f"ECG record {tmp_path / 'm'}: {MIXED_SPF} (I: 2, II: 1); choose leads "
                            f"that share one sampling rate")


@pytest.mark.parametrize("fmt, bits, pack", [
    ("16", 16, lambda d: d.astype("<i2").tobytes()),
    ("61", 16, lambda d: d.astype(">i2").tobytes()),
    ("80", 8, lambda d: (d + 128).astype(np.uint8).tobytes()),
    ("160", 16, lambda d: (d + 32768).astype("<u2").tobytes()),
    ("24", 24, lambda d: np.stack([(d >> s) & 0xFF for s in (0, 8, 16)], -1).astype(np.uint8).tobytes()),
    ("32", 32, lambda d: d.astype("<i4").tobytes()),
])
def test_byte_offsets_on_the_fast_path(tmp_path, fmt, bits, pack):
    d = digital(501, bits, width=2)
    header = f"r 2 360 501\nr.dat {fmt}+37 50 {bits} 0 0 0 0 V1\nr.dat {fmt}+37 50 {bits} 0 0 0 0 V2\n"
    r = write_record(tmp_path, header.encode(), bytes(range(37)) + pack(d))
    assert record_info(str(r)).path == "fast"
    for got in both_paths(r):
        np.testing.assert_array_equal(got, d.T / 50)


@pytest.mark.parametrize("n", [1, 999, 1001])
def test_format_212_with_an_odd_sample_count(tmp_path, n):
    d = digital(n, 12)[:, 0]
    padded = np.append(d, 0) if n % 2 else d
    lo, hi = padded[0::2] & 0xFFF, padded[1::2] & 0xFFF
    packed = np.stack([lo & 0xFF, ((lo >> 8) & 0x0F) | ((hi >> 4) & 0xF0), hi & 0xFF], -1).astype(np.uint8)
    data = packed.tobytes()[: (3 * n + 1) // 2]  # an odd count ends after the 2nd byte of a triple
    r = write_record(tmp_path, f"r 1 360 {n}\nr.dat 212 200 12 0 0 0 0 II\n".encode(), data)
    for got in both_paths(r):
        np.testing.assert_array_equal(got, d[None] / 200)


@pytest.mark.parametrize("units", [b"\xc2\xb5V", b"\xb5V", b"\xce\xbcV"], ids=["utf8-micro", "latin1-micro", "utf8-mu"])
def test_microvolt_headers_in_either_encoding_come_out_in_mv(tmp_path, units):
    d = digital(1000, 16)[:, 0]
    r = write_record(tmp_path, b"r 1 500 1000\nr.dat 16 10/" + units + b" 16 0 0 0 0 II\n",
                     d.astype("<i2").tobytes())
    text = units.decode("utf-8") if units != b"\xb5V" else units.decode("latin-1")
    for fast in (True, False):
        assert record_info(str(r), fast=fast).units == [text]
        assert inspect_record(r)["units"] == [text]
        x = read_ecg(r, SignalSpec(fs=500, leads=("II",), n_samples=1000), fast=fast)
        np.testing.assert_allclose(x[0], (d / 10 / 1000).astype(np.float32), rtol=1e-6)


def test_first_window_nan_but_finite_later(tmp_path):
    d = digital(3000, 16, width=2)
    d[:1500, 1] = -32768  # lead II missing for the first 3 s
    r = write_record(tmp_path, b"r 2 500 3000\nr.dat 16 1000 16 0 0 0 0 I\nr.dat 16 1000 16 0 0 0 0 II\n",
                     d.astype("<i2").tobytes())
    for fast in (True, False):
        with pytest.raises(ECGError) as e:
            read_ecg(r, SignalSpec(fs=500, leads=("I", "II"), n_samples=1000), fast=fast)
        assert str(e.value) == (
            f"ECG record {r}: lead II has no finite samples in the 1000 samples (2 s from the start) the "
            f"signal spec uses, although 1500 of its 3000 samples are finite (the first at sample 1500, "
            f"3 s); expected a measured signal in that window")
        x = read_ecg(r, SignalSpec(fs=500, leads=("I", "II"), n_samples=3000), fast=fast)
        assert (x[1, :1500] == 0).all()
        np.testing.assert_array_equal(x[1, 1500:], (d[1500:, 1] / 1000).astype(np.float32))


def test_zero_samples_layout_only_and_edf_have_their_own_messages(tmp_path):
    r = write_record(tmp_path, b"r 1 500 0\nr.dat 16 200 16 0 0 0 0 II\n", b"")
    layout = SAMPLE / "multi-segment/s25047/3234460_layout"
    edf = SAMPLE / "test_edfann.edf"
    spec = SignalSpec(fs=500, leads=("II",), n_samples=1000)
    for fast in (True, False):
        with pytest.raises(ECGError) as e:
            read_ecg(r, spec, fast=fast)
        assert str(e.value) == f"ECG record {r}: header {r}.hea declares 0 samples; expected a recorded signal"
        with pytest.raises(ECGError) as e:
            read_ecg(layout, spec, fast=fast)
        assert str(e.value) == (
            f"ECG record {layout}: {layout}.hea is the layout header of a variable-layout multi-segment "
            f"record (signals ['II', 'V', 'ABP'], 0 samples, no signal file); read the multi-segment "
            f"record that lists it as its first segment")
        with pytest.raises(ECGError) as e:
            read_ecg(edf, spec, fast=fast)
        stem = str(edf)[:-4]
        assert str(e.value) == (
            f"ECG record {stem}: EDF is not supported: {edf} is an EDF file; gemfactory reads WFDB "
            f"records (NAME.hea with its .dat/.mat); convert it to WFDB first "
            f"(e.g. wfdb.io.convert.edf.read_edf(...).wrsamp())")
