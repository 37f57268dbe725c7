"""The fast WFDB path reads exactly what wfdb reads, and hands everything else to wfdb.
(Every format of wfdb's own sample records is compared in test_wfdb_corpus.py.)"""
import shutil

import numpy as np
import pytest
import wfdb

from gemfactory.data import ecg_io
from gemfactory.data.ecg_io import read_ecg
from gemfactory.data.wfdb_fast import read_header, read_physical
from gemfactory.ecg.spec import STANDARD_LEADS, SignalSpec

RECORDS = ["100", "s0010_re", "JS00001"]  # formats 212, 16 (15 signals, one file), 16+24 (.mat)


@pytest.mark.parametrize("name", RECORDS)
def test_header_and_samples_equal_wfdb(shared_data, name):
    record = str(shared_data / name)
    h, ref = read_header(record), wfdb.rdheader(record)
    assert h is not None, "the fast path should handle this record"
    assert (h.fs, h.sig_len, h.sig_name, h.units, h.file_name) == (
        float(ref.fs), ref.sig_len, ref.sig_name, ref.units, ref.file_name)
    channels = list(range(len(h.sig_name)))[::-1]  # any subset, any order
    for sampto in (None, 1001):
        want = wfdb.rdrecord(record, channels=channels, sampto=sampto).p_signal
        np.testing.assert_array_equal(read_physical(h, channels, sampto), want.T)


def test_missing_samples_are_nan_like_wfdb(tmp_path):
    sig = np.sin(np.linspace(0, 20, 1000))[None].repeat(2, 0)
    sig[1, 10:20] = np.nan
    ecg_io.write_ecg(tmp_path / "r", sig, 500, ["I", "II"])
    record = str(tmp_path / "r")
    np.testing.assert_array_equal(read_physical(read_header(record), [0, 1], None),
                                  wfdb.rdrecord(record).p_signal.T)
    assert np.isnan(read_physical(read_header(record), [1], None)[0, 10:20]).all()


@pytest.mark.parametrize("line, why", [
    ("r/2 2 500 1000", "multi-segment"),
    ("r 2 500", "no signal length"),
])
def test_unusual_headers_go_to_wfdb(tmp_path, line, why):
    (tmp_path / "r.hea").write_text(line + "\nr.dat 16 200 16 0 0 0 0 I\nr.dat 16 200 16 0 0 0 0 II\n")
    assert read_header(str(tmp_path / "r")) is None, why


@pytest.mark.parametrize("fmt", ["8", "16x2", "16:1", "310", "311", "508"])
def test_other_formats_go_to_wfdb(tmp_path, fmt):
    (tmp_path / "r.hea").write_text(f"r 1 500 1000\nr.dat {fmt} 200 16 0 0 0 0 I\n")
    assert read_header(str(tmp_path / "r")) is None


def test_read_ecg_same_with_and_without_the_fast_path(shared_data):
    spec = SignalSpec(fs=500, leads=STANDARD_LEADS, n_samples=5000)
    two = SignalSpec(fs=250, leads=("II",), n_samples=2500)
    cases = [("JS00001", spec), ("s0010_re", spec), ("100", two)]
    fast = [read_ecg(shared_data / n, s) for n, s in cases]
    slow = [read_ecg(shared_data / n, s, fast=False) for n, s in cases]
    for (name, _), a, b in zip(cases, fast, slow):
        np.testing.assert_array_equal(a, b, err_msg=name)


def test_truncated_signal_file_is_a_clear_error(shared_data, tmp_path):
    for suffix in (".hea", ".mat"):
        shutil.copy(shared_data / f"JS00001{suffix}", tmp_path / f"JS00001{suffix}")
    data = (tmp_path / "JS00001.mat").read_bytes()
    (tmp_path / "JS00001.mat").write_bytes(data[: len(data) // 3])
    with pytest.raises(ecg_io.ECGError, match=r"JS00001: signal file\(s\) \['JS00001.mat'\] missing, truncated"):
        read_ecg(tmp_path / "JS00001", SignalSpec(fs=500, leads=STANDARD_LEADS, n_samples=5000))


@pytest.mark.parametrize("fs", [100, 250, 360, 1000])
def test_resampling_equals_scipy_default(tmp_path, fs):
    from scipy.signal import resample_poly

    sig = np.sin(np.linspace(0, 50, 4 * fs))[None] + np.cos(np.linspace(0, 9, 4 * fs))[None]
    ecg_io.write_ecg(tmp_path / "r", sig, fs, ["II"])
    spec = SignalSpec(fs=500, leads=("II",), n_samples=2000)
    physical = wfdb.rdrecord(str(tmp_path / "r")).p_signal.T
    from fractions import Fraction
    ratio = Fraction(500, fs)
    want = resample_poly(physical, ratio.numerator, ratio.denominator, axis=1)[:, :2000]
    np.testing.assert_array_equal(read_ecg(tmp_path / "r", spec)[:, :want.shape[1]], want.astype(np.float32))
