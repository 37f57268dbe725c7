"""gemfactory.data.ecg_io against the real WFDB records that ship in tests/data."""
import numpy as np
import pytest
import wfdb
from scipy.signal import resample_poly

from gemfactory.data.ecg_io import ECGStats, canonical_lead, inspect_record, read_ecg, write_ecg
from gemfactory.ecg.spec import STANDARD_LEADS, SignalSpec
from gemfactory.errors import ECGError

SPEC12 = SignalSpec(fs=500, leads=STANDARD_LEADS, n_samples=5000)
LIMB = ("I", "II", "III", "aVR", "aVL", "aVF")


def raw(path, **kw):
    """(leads, samples) physical signal as wfdb reads it."""
    return wfdb.rdrecord(str(path), **kw).p_signal.T


def synthetic(n_leads=2, n=2000, fs=500, seed=0):
    t = np.arange(n) / fs
    rng = np.random.default_rng(seed)
    return np.stack([np.sin(2 * np.pi * (1 + k) * t) * (0.5 + k) + 0.05 * rng.standard_normal(n)
                     for k in range(n_leads)])


def test_canonical_lead():
    assert canonical_lead("avr") == "aVR" and canonical_lead(" AVL ") == "aVL"
    assert canonical_lead("MLII") == "II" and canonical_lead("D3") == "III"
    assert canonical_lead("v6") == "V6" and canonical_lead("I") == "I"
    assert canonical_lead("vx") is None and canonical_lead("-aVR") is None


def test_js00001_12_lead_native(shared_data):
    x = read_ecg(shared_data / "JS00001", SPEC12)
    assert x.shape == (12, 5000) and x.dtype == np.float32 and x.flags.c_contiguous
    np.testing.assert_allclose(x, raw(shared_data / "JS00001"), atol=1e-6)


def test_s0010_resampled_and_reordered(shared_data):
    stats = ECGStats()
    x = read_ecg(shared_data / "s0010_re", SPEC12, stats=stats)
    assert x.shape == (12, 5000) and x.dtype == np.float32
    r = wfdb.rdrecord(str(shared_data / "s0010_re"))
    assert r.sig_name[3] == "avr" and r.fs == 1000
    expected = resample_poly(r.p_signal.T[:12], 1, 2, axis=1)[:, :5000]  # full record, then crop
    np.testing.assert_allclose(x[STANDARD_LEADS.index("aVR")], expected[3], atol=1e-5)
    np.testing.assert_allclose(x, expected, atol=1e-5)
    assert (stats.records, stats.resampled, stats.cropped, stats.padded) == (1, 1, 1, 0)
    # any requested order, names matched case-insensitively
    rev = read_ecg(shared_data / "s0010_re", SignalSpec(fs=500, leads=("V6", "aVR", "vx"), n_samples=5000))
    np.testing.assert_allclose(rev[:2], x[[11, 3]], atol=1e-6)
    np.testing.assert_allclose(rev[2], resample_poly(r.p_signal[:, 12], 1, 2)[:5000], atol=1e-5)


def test_js00001_downsampled_to_100hz(shared_data):
    x = read_ecg(shared_data / "JS00001", SignalSpec(fs=100, n_samples=1000))
    expected = resample_poly(raw(shared_data / "JS00001"), 1, 5, axis=1)
    assert expected.shape == (12, 1000)
    np.testing.assert_allclose(x, expected, atol=1e-5)


def test_record_100_missing_leads(shared_data):
    with pytest.raises(ECGError) as e:
        read_ecg(shared_data / "100", SPEC12)
    msg = str(e.value)
    assert "100" in msg and "missing leads" in msg and "'I'" in msg and "'V1'" in msg
    assert "'MLII'" in msg and "'V5'" in msg and "\n" not in msg


def test_record_100_two_leads(shared_data):
    # native rate: MLII maps to II, only the first 10 s of the 30 min record are read
    x = read_ecg(shared_data / "100", SignalSpec(fs=360, leads=("II", "V5"), n_samples=3600))
    np.testing.assert_allclose(x, raw(shared_data / "100", sampto=3600), atol=1e-6)
    # 360 -> 500 Hz reads a prefix only; must equal resampling the whole record, then cropping
    stats = ECGStats()
    y = read_ecg(shared_data / "100", SignalSpec(fs=500, leads=("V5", "II"), n_samples=5000), stats=stats)
    full = resample_poly(raw(shared_data / "100"), 25, 18, axis=1)[:, :5000]
    np.testing.assert_allclose(y, full[::-1], atol=1e-5)
    assert stats.resampled == 1 and stats.cropped == 1


def test_derived_limb_leads(tmp_path):
    sig = synthetic(2)
    write_ecg(tmp_path / "deep" / "dir" / "rec", sig, 500, ["I", "II"])
    stats = ECGStats()
    spec = SignalSpec(fs=500, leads=LIMB, n_samples=2000)
    x = read_ecg(tmp_path / "deep" / "dir" / "rec", spec, stats=stats).astype(np.float64)
    i, ii = x[0], x[1]
    np.testing.assert_allclose(i, sig[0], atol=1e-3)
    np.testing.assert_allclose(x[2], ii - i, atol=1e-5)
    np.testing.assert_allclose(x[3], -(i + ii) / 2, atol=1e-5)
    np.testing.assert_allclose(x[4], i - ii / 2, atol=1e-5)
    np.testing.assert_allclose(x[5], ii - i / 2, atol=1e-5)
    assert stats.derived == 1
    with pytest.raises(ECGError, match=r"disabled.*has leads \['I', 'II'\]"):
        read_ecg(tmp_path / "deep" / "dir" / "rec", SignalSpec(leads=LIMB, allow_derived_leads=False))
    with pytest.raises(ECGError, match="missing leads"):
        read_ecg(tmp_path / "deep" / "dir" / "rec", spec, on_derive="refuse")
    with pytest.raises(ECGError, match="on_derive"):
        read_ecg(tmp_path / "deep" / "dir" / "rec", spec, on_derive="maybe")


def test_units_converted_to_mv(tmp_path):
    sig = synthetic(2)
    wfdb.wrsamp("uv", fs=500, units=["uV", "V"], sig_name=["I", "II"],
                p_signal=np.stack([sig[0] * 1000, sig[1] / 1000], axis=1), fmt=["16", "16"],
                adc_gain=[1.0, 1e6], baseline=[0, 0], write_dir=str(tmp_path))
    x = read_ecg(tmp_path / "uv", SignalSpec(leads=("I", "II"), n_samples=2000))
    np.testing.assert_allclose(x, sig, atol=1e-3)
    wfdb.wrsamp("mmhg", fs=500, units=["mV", "mmHg"], sig_name=["I", "ABP"], p_signal=sig.T,
                fmt=["16", "16"], adc_gain=[1000.0, 1000.0], baseline=[0, 0], write_dir=str(tmp_path))
    with pytest.raises(ECGError, match=r"lead ABP has unknown units 'mmHg'"):
        read_ecg(tmp_path / "mmhg", SignalSpec(leads=("I", "ABP"), n_samples=2000))


def test_missing_and_corrupt_records(tmp_path, shared_data):
    with pytest.raises(ECGError) as e:
        read_ecg(tmp_path / "nope", SPEC12)
    assert str(e.value) == (f"ECG record not found: {tmp_path / 'nope'}.hea "
                            "(expected a WFDB header next to .dat/.mat)")
    with pytest.raises(ECGError, match="not found"):
        inspect_record(tmp_path / "nope")

    write_ecg(tmp_path / "trunc", synthetic(12, 5000), 500, STANDARD_LEADS)
    dat = tmp_path / "trunc.dat"
    dat.write_bytes(dat.read_bytes()[: dat.stat().st_size // 2])
    with pytest.raises(ECGError, match=r"trunc.*truncated or corrupt") as e:
        read_ecg(tmp_path / "trunc", SPEC12)
    assert str(tmp_path / "trunc") in str(e.value)
    dat.unlink()
    with pytest.raises(ECGError, match=r"trunc.*missing, truncated or corrupt"):
        read_ecg(tmp_path / "trunc", SPEC12)

    # a truncated MATLAB-format record (copy of the real JS00001)
    for ext in (".hea", ".mat"):
        (tmp_path / f"JS00001{ext}").write_bytes((shared_data / f"JS00001{ext}").read_bytes())
    mat = tmp_path / "JS00001.mat"
    mat.write_bytes(mat.read_bytes()[:5000])
    with pytest.raises(ECGError, match="JS00001.*truncated or corrupt"):
        read_ecg(tmp_path / "JS00001", SPEC12)

    (tmp_path / "bad.hea").write_text("this is not a header\n")
    with pytest.raises(ECGError, match="bad"):
        read_ecg(tmp_path / "bad", SPEC12)


def test_flat_record(tmp_path):
    write_ecg(tmp_path / "flat", np.full((2, 1000), 0.25), 500, ["I", "II"])
    with pytest.raises(ECGError, match=r"flat.*flat-line"):
        read_ecg(tmp_path / "flat", SignalSpec(leads=("I", "II")))
    write_ecg(tmp_path / "zero", np.zeros((12, 1000)), 500, STANDARD_LEADS)
    with pytest.raises(ECGError, match="flat-line"):
        read_ecg(tmp_path / "zero", SPEC12)


def test_nan_handling(tmp_path):
    sig = synthetic(2)
    sig[1, 100:200] = np.nan
    write_ecg(tmp_path / "gap", sig, 500, ["I", "II"])
    stats = ECGStats()
    x = read_ecg(tmp_path / "gap", SignalSpec(leads=("I", "II"), n_samples=2000), stats=stats)
    assert np.isfinite(x).all() and (x[1, 100:200] == 0).all()
    np.testing.assert_allclose(x[1, 200:], sig[1, 200:], atol=1e-3)
    assert stats.nan_replaced == 1
    sig[1] = np.nan
    write_ecg(tmp_path / "dead", sig, 500, ["I", "II"])
    with pytest.raises(ECGError) as e:
        read_ecg(tmp_path / "dead", SignalSpec(leads=("I", "II")))
    assert str(e.value) == (f"ECG record {tmp_path / 'dead'}: leads ['II'] contain no finite samples "
                            f"(all NaN/missing); expected a measured signal")
    # the dead lead is not read when the spec does not need it
    assert read_ecg(tmp_path / "dead", SignalSpec(leads=("I",), n_samples=2000)).shape == (1, 2000)


def test_write_read_round_trip(tmp_path):
    sig = synthetic(12, 3000, seed=3)
    write_ecg(tmp_path / "rt", sig, 500, STANDARD_LEADS)
    assert inspect_record(tmp_path / "rt") == {"fs": 500.0, "n_samples": 3000,
                                               "leads": list(STANDARD_LEADS), "units": ["mV"] * 12,
                                               "samples_per_frame": [1] * 12}
    x = read_ecg(tmp_path / "rt", SignalSpec(n_samples=3000))
    np.testing.assert_allclose(x, sig, atol=1e-3)
    with pytest.raises(ECGError, match="shape"):
        write_ecg(tmp_path / "bad", sig, 500, ["I"])


def test_pad_and_crop(shared_data):
    full = raw(shared_data / "JS00001")
    stats = ECGStats()
    x = read_ecg(shared_data / "JS00001", SignalSpec(n_samples=6000), stats=stats)
    assert x.shape == (12, 6000) and (x[:, 5000:] == 0).all()
    np.testing.assert_allclose(x[:, :5000], full, atol=1e-6)
    y = read_ecg(shared_data / "JS00001", SignalSpec(n_samples=1234), stats=stats)
    np.testing.assert_allclose(y, full[:, :1234], atol=1e-6)
    assert (stats.padded, stats.cropped, stats.resampled) == (1, 1, 0)
    line = stats.summary()
    assert "\n" not in line and "2 records" in line and "1 zero-padded" in line


def test_normalisation(shared_data, tmp_path):
    x = read_ecg(shared_data / "JS00001", SignalSpec(normalisation="zscore")).astype(np.float64)
    np.testing.assert_allclose(x.mean(axis=1), 0, atol=1e-4)
    np.testing.assert_allclose(x.std(axis=1), 1, atol=1e-3)
    s = read_ecg(shared_data / "JS00001", SignalSpec(normalisation="scale", scale=0.5))
    np.testing.assert_allclose(s, 0.5 * raw(shared_data / "JS00001"), atol=1e-6)
    sig = synthetic(2)
    sig[1] = 0.3
    write_ecg(tmp_path / "oneflat", sig, 500, ["I", "II"])
    z = read_ecg(tmp_path / "oneflat", SignalSpec(leads=("I", "II"), n_samples=2500, normalisation="zscore"))
    assert (z[1] == 0).all() and (z[0, 2000:] == 0).all()  # flat lead stays 0; padding stays 0
    assert abs(z[0, :2000].std() - 1) < 1e-3


def test_inspect_real_record(shared_data):
    info = inspect_record(shared_data / "s0010_re.hea")
    assert info["fs"] == 1000 and info["n_samples"] == 38400
    assert info["leads"][:4] == ["i", "ii", "iii", "avr"] and len(info["leads"]) == 15
    assert inspect_record(shared_data / "100")["leads"] == ["MLII", "V5"]
