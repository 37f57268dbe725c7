"""WFDB fidelity: gemfactory's reader against wfdb itself, on wfdb-python's own sample records.

The seam is ``gemfactory.data.wfdb_read.read_signals`` (physical values before unit conversion,
lead mapping and resampling). Every record of tests/data/wfdb-sample (and the real records in
tests/data) either equals ``wfdb.rdrecord(record, physical=True, m2s=True)`` exactly on both
the fast path and the wfdb path, or raises one ECGError naming the unsupported feature.
Signals with several samples per frame are compared unsmoothed (``smooth_frames=False``).

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
    "03700181": MIXED_SPF,
    "mixedsignals": MIXED_SPF,
    "test01_00s_frame": MIXED_SPF,
    "test01_00s_skewframe": MIXED_SPF,
    "multi-segment/041s/041s": MIXED_SPF,
    "multi-segment/041s/041s01": MIXED_SPF,
    "multi-segment/041s/041s02": MIXED_SPF,
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


def reference(record: str, channels: list[int], spf: int) -> np.ndarray:
    """wfdb's own physical samples (channels, samples); unsmoothed where frames hold several."""
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
        if name.endswith(".edf") or "layout header" in message:
            return "ERROR", message
        # several samples per frame: each group of equal rate must still match
        for group in spf_groups(record):
            want = reference(record, group, int(info.samps_per_frame[group[0]]))
            assert np.array_equal(read_signals(info, group), want, equal_nan=True), (name, group)
        return "ERROR", message + " [each equal-rate group: MATCH]"
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
    for name, layout in [("multi-segment/fixed1/v102s", "fixed"),
                         ("multi-segment/s25047/s25047-2704-05-04-10-44", "variable")]:
        assert check_record(f"wfdb-sample/{name}", fast=True) == ("MATCH", "fast-segments")
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
