"""Synthetic 12-lead ECG dataset: simulation, WFDB records, JSON items, determinism."""
import json
import re
from pathlib import Path

import numpy as np
import pytest
import wfdb
from PIL import Image
from scipy.signal import butter, find_peaks, sosfiltfilt

from gemfactory.data import synth
from gemfactory.data.synth import (
    CLASS_HR_RANGES, CLASSES, SAMPLING_RATES, _write_record, simulate_ecg, synthesize,
)
from gemfactory.data.synth_waves import _wave_timing, lead_amplitudes
from gemfactory.ecg.spec import STANDARD_LEADS
from gemfactory.errors import DataError

N_TRAIN, N_TEST = 30, 9


def measured_rate(x, fs):
    """Beat rate of a (12, n) record: peaks of the 8-25 Hz energy summed over the leads."""
    sos = butter(2, [8, min(25, 0.45 * fs)], btype="bandpass", fs=fs, output="sos")
    energy = (np.gradient(sosfiltfilt(sos, x, axis=1), axis=1) ** 2).sum(axis=0)
    width = max(1, int(0.05 * fs))
    energy = np.convolve(energy, np.ones(width) / width, mode="same")
    peaks, _ = find_peaks(energy, height=0.3 * np.percentile(energy, 99), distance=int(0.3 * fs))
    return 60.0 / (np.diff(peaks).mean() / fs)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    summary = synthesize(out, n_train=N_TRAIN, n_test=N_TEST, seed=0, workers=1)
    train = json.loads((out / "train.json").read_text())
    test = json.loads((out / "test.json").read_text())
    return out, summary, train, test


# -- simulation ------------------------------------------------------------------------------


def test_simulate_shape_units_and_determinism():
    x = simulate_ecg(75, fs=100, duration_s=10, rng=np.random.default_rng(3))
    assert x.shape == (12, 1000) and x.dtype == np.float64 and np.isfinite(x).all()
    assert np.array_equal(x, simulate_ecg(75, fs=100, duration_s=10, rng=3))
    assert not np.array_equal(x, simulate_ecg(75, fs=100, duration_s=10, rng=4))
    assert simulate_ecg(60, fs=250, duration_s=4, rng=0).shape == (12, 1000)
    # Limb leads are computed from I and II as an electrocardiograph does: Einthoven and
    # Goldberger hold exactly, noise included.
    lead = {name: x[i] for i, name in enumerate(STANDARD_LEADS)}
    assert np.allclose(lead["III"], lead["II"] - lead["I"])
    assert np.allclose(lead["aVR"] + lead["aVL"] + lead["aVF"], 0.0)
    # Plausible mV on every record: the largest lead swings 0.4-12 mV, nothing near int16 limits.
    for seed in range(20):
        y = simulate_ecg(80, fs=250, rng=seed)
        assert 0.4 < np.ptp(y, axis=1).max() < 12 and np.abs(y).max() < 30


@pytest.mark.parametrize("fs", [100, 250, 500, 1000])
@pytest.mark.parametrize("hr", [35, 64, 96, 105, 170])
def test_simulated_heart_rate_recovered_from_the_beats(hr, fs):
    for seed in range(4):
        assert measured_rate(simulate_ecg(hr, fs=fs, duration_s=10, rng=seed), fs) == pytest.approx(hr, rel=0.10)


def test_morphology_varies_between_records():
    amps = np.stack([lead_amplitudes(np.random.default_rng(s)) for s in range(200)])  # (200, 12, waves)
    r_wave, t_wave = amps[:, :, 2], amps[:, :, 5]
    lead = {name: i for i, name in enumerate(STANDARD_LEADS)}
    # the electrical axis varies: the R wave in aVL and III is upright in some records, inverted in others
    for name in ("aVL", "III"):
        assert (r_wave[:, lead[name]] > 0.1).mean() > 0.1 and (r_wave[:, lead[name]] < -0.1).mean() > 0.1
    assert (t_wave[:, lead["V1"]] > 0).any() and (t_wave[:, lead["V1"]] < 0).any()  # T polarity in V1
    assert (r_wave[:, lead["aVR"]] < 0).mean() > 0.9  # ... while aVR stays mostly negative, as it does
    assert (amps[:, :, 3] != 0).any(axis=1).mean() > 0.05  # some RSR' complexes
    assert np.mean(r_wave[:, lead["V5"]] > r_wave[:, lead["V1"]]) > 0.95  # R-wave progression


def test_qt_and_pr_follow_the_rate():
    rr = np.array([0.35, 0.6, 1.0, 1.6])
    offsets, _ = _wave_timing(rr, np.random.default_rng(0))
    t_peak, pr = offsets[5], -offsets[0]
    assert np.all(np.diff(t_peak) > 0) and np.all(np.diff(pr) >= 0)  # slower: longer QT, longer PR
    assert 0.15 < t_peak[0] < t_peak[-1] < 0.5


def test_noise_of_the_real_kinds():
    fs = 1000
    freqs = np.fft.rfftfreq(10 * fs, 1 / fs)
    mains = lowband = 0
    for seed in range(30):
        x = simulate_ecg(75, fs=fs, rng=seed)
        spec = np.abs(np.fft.rfft(x[0]))
        near = lambda f: spec[(freqs > f - 0.3) & (freqs < f + 0.3)].max()  # noqa: E731
        mains += max(near(50), near(60)) > 20 * np.median(spec[(freqs > 40) & (freqs < 70)])
        lowband += spec[freqs < 0.6].max() > spec[(freqs > 5) & (freqs < 15)].max()
    assert 5 <= mains <= 25  # powerline in some records, not all
    assert lowband >= 3  # strong baseline wander in some


def test_simulate_rejects_bad_rate():
    with pytest.raises(DataError, match="heart rate"):
        simulate_ecg(0, rng=0)


# -- records ---------------------------------------------------------------------------------


def test_write_record_matches_wfdb_wrsamp(tmp_path):
    x = np.round(simulate_ecg(75, rng=0) * 1000) / 1000
    x[4, 10:20] = np.nan
    _write_record(tmp_path / "mine", x, 100)
    n = 12
    wfdb.wrsamp("ref", fs=100, units=["mV"] * n, sig_name=list(STANDARD_LEADS), p_signal=x.T,
                fmt=["16"] * n, adc_gain=[1000.0] * n, baseline=[0] * n, write_dir=str(tmp_path))
    assert (tmp_path / "mine.dat").read_bytes() == (tmp_path / "ref.dat").read_bytes()
    assert (tmp_path / "mine.hea").read_text().replace("mine", "ref") == (tmp_path / "ref.hea").read_text()


def test_records_readable_with_wfdb(small):
    out, _, train, test = small
    ids = sorted({it["ecg"] for it in train + test if "ecg" in it})
    assert len(ids) == N_TRAIN + N_TEST
    assert len(list((out / "ecg").glob("*.hea"))) == N_TRAIN + N_TEST
    rates = set()
    for rid in ids:
        rec = wfdb.rdrecord(str(out / "ecg" / rid))
        assert rec.n_sig == 12 and rec.fs in SAMPLING_RATES and rec.sig_len == 10 * rec.fs
        assert rec.p_signal.shape == (rec.sig_len, 12)
        assert rec.sig_name == list(STANDARD_LEADS)
        assert rec.units == ["mV"] * 12
        assert np.isfinite(rec.p_signal).all() and 0.2 < np.abs(rec.p_signal).max() < 30
        rates.add(rec.fs)
    assert len(rates) >= 3  # records at several sampling rates
    fixed = synthesize(out.parent / "fixed", n_train=3, n_test=0, fs=500, image_fraction=0.0, workers=1)
    assert {wfdb.rdheader(str(p.with_suffix(""))).fs for p in (Path(fixed["out_dir"]) / "ecg").glob("*.hea")} == {500}


def test_record_rate_matches_its_label(small):
    out, _, train, _ = small
    for it in train:
        if it["task"] != "heart_rate":
            continue
        rec = wfdb.rdrecord(str(out / "ecg" / it["ecg"]))
        lo, hi = CLASS_HR_RANGES[it["label"]]
        assert lo * 0.9 <= measured_rate(rec.p_signal.T, rec.fs) <= hi * 1.1, it["id"]


# -- items -----------------------------------------------------------------------------------


def test_items_valid_and_placeholders_match_modalities(small):
    out, _, train, test = small
    for items in (train, test):
        assert len({it["id"] for it in items}) == len(items)
        for it in items:
            assert set(it) <= {"id", "ecg", "image", "conversations", "task", "label"}
            human, gpt = it["conversations"]
            assert human["from"] == "human" and gpt["from"] == "gpt" and gpt["value"]
            q = human["value"]
            prefix = ("<ecg>\n" if "ecg" in it else "") + ("<image>\n" if "image" in it else "")
            assert q.startswith(prefix)
            assert q.count("<ecg>") == ("ecg" in it) and q.count("<image>") == ("image" in it)
            assert "<" not in q[len(prefix):]
            if "ecg" in it:
                assert (out / "ecg" / (it["ecg"] + ".hea")).is_file() and "/" not in it["ecg"]
            if "image" in it:
                assert (out / "images" / it["image"]).is_file()
            if it["task"] == "heart_rate":
                assert "ecg" in it and it["label"] in CLASSES
                assert it["label"] in gpt["value"].lower()
            elif it["task"] == "grid_color":
                assert set(it) >= {"image"} and "ecg" not in it
                assert gpt["value"] == f"The grid is {it['label']}."
            else:
                assert it["task"] == "text" and "ecg" not in it and "image" not in it
                assert it["label"]


def test_grid_colour_label_matches_the_picture(small):
    out, _, train, test = small
    channel = {"red": 0, "green": 1, "blue": 2}
    for it in train + test:
        if it["task"] == "grid_color":
            with Image.open(out / "images" / it["image"]) as im:
                arr = np.asarray(im.convert("RGB")).astype(float)
            corner = arr[-arr.shape[0] // 20:, -arr.shape[1] // 8:].reshape(-1, 3).mean(axis=0)
            assert int(np.argmax(corner)) == channel[it["label"]], (it["id"], corner)


def test_splits_disjoint_balanced_and_all_kinds_present(small):
    _, summary, train, test = small

    def records(items):
        return {it.get("ecg") or Path(it["image"]).stem for it in items if "ecg" in it or "image" in it}

    assert records(train).isdisjoint(records(test))
    assert len(records(train)) == N_TRAIN and len(records(test)) == N_TEST
    assert summary["records"] == {"train": N_TRAIN, "test": N_TEST}
    assert summary["classes"]["train"] == {c: N_TRAIN // 3 for c in CLASSES}
    assert summary["classes"]["test"] == {c: N_TEST // 3 for c in CLASSES}
    kinds = summary["items"]["train"]
    assert set(kinds) == {"ecg", "ecg_image", "image", "text"}
    assert sum(kinds.values()) == len(train) and sum(summary["items"]["test"].values()) == len(test)
    assert kinds["ecg_image"] == kinds["image"] == round(0.3 * N_TRAIN)
    assert kinds["ecg"] == N_TRAIN - kinds["image"]
    assert summary["images"] == round(0.3 * N_TRAIN) + round(0.3 * N_TEST)
    assert 0.05 < kinds["text"] / len(train) < 0.15
    assert isinstance(summary["elapsed_s"], float)


def test_deterministic_for_a_seed_serial_or_parallel(tmp_path, monkeypatch):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    pools = []
    real = synth._start_method
    monkeypatch.setattr(synth, "_start_method", lambda: pools.append(real()) or pools[-1])
    # 18 images: the second run renders them in 2 worker processes, the others in-process.
    synthesize(a, n_train=15, n_test=3, seed=5, image_fraction=1.0, image_dpi=30, workers=1)
    assert pools == []
    synthesize(b, n_train=15, n_test=3, seed=5, image_fraction=1.0, image_dpi=30, workers=2)
    assert len(pools) == 1
    synthesize(c, n_train=15, n_test=3, seed=6, image_fraction=1.0, image_dpi=30, workers=1)

    def files(root):
        return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}

    fa, fb, fc = files(a), files(b), files(c)
    assert len([k for k in fa if k.endswith(".png")]) == 18
    assert fa == fb
    assert fa["train.json"] != fc["train.json"]
    assert not any(re.search(r"\.tmp$", k) for k in fa)


def test_bad_arguments(tmp_path):
    with pytest.raises(DataError, match="image_fraction"):
        synthesize(tmp_path, n_train=3, n_test=3, image_fraction=1.5)
    with pytest.raises(DataError, match="n_train"):
        synthesize(tmp_path, n_train=0, n_test=0)
