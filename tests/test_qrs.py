"""The QRS detector against reference beat annotations (MIT-BIH 100) and on 12-lead records at
100, 500 and 1000 Hz (PTB s0010_re, Challenge JS00001), natively and resampled."""
import numpy as np
import pytest
import wfdb
from wfdb.processing import compare_annotations

from gemfactory.data.ecg_io import inspect_record, read_ecg, write_ecg
from gemfactory.data.qrs import MIN_SECONDS, detect, detect_record, rate_class
from gemfactory.ecg.spec import STANDARD_LEADS, SignalSpec

BEAT_SYMBOLS = set("NLRBAaJSVrFejnE/fQ?")  # wfdb's beat annotation codes (not rhythm or signal notes)
TOLERANCE_S = 0.15


def reference_beats(record) -> np.ndarray:
    ann = wfdb.rdann(str(record), "atr")
    return np.array([s for s, sym in zip(ann.sample, ann.symbol) if sym in BEAT_SYMBOLS])


def match(reference, found, fs):
    c = compare_annotations(np.asarray(reference), np.asarray(found), int(TOLERANCE_S * fs))
    return c.sensitivity, c.positive_predictivity


def resampled(record, fs, folder, leads=STANDARD_LEADS):
    """The record resampled to ``fs`` and written as a new WFDB record (its whole length)."""
    info = inspect_record(record)
    n = int(info["n_samples"] * fs / info["fs"])
    out = folder / f"{record.name}_{fs}"
    write_ecg(out, read_ecg(record, SignalSpec(fs=fs, leads=leads, n_samples=n)), fs, leads)
    return out


def test_mitbih_100_beats_match_the_reference_annotations(shared_data):
    beats = detect_record(shared_data / "100")
    ref = reference_beats(shared_data / "100")
    assert len(ref) == 2273
    assert (beats.fs, beats.lead, beats.lead_choice) == (360.0, "MLII", "lead II")
    sensitivity, ppv = match(ref, beats.samples, 360)
    assert sensitivity > 0.99 and ppv > 0.99, (sensitivity, ppv)
    annotated_rate = 60 / np.diff(ref / 360).mean()
    assert beats.rate_bpm == pytest.approx(annotated_rate, abs=0.5)


def test_mitbih_100_at_100_hz_still_matches(shared_data, tmp_path):
    record = resampled(shared_data / "100", 100, tmp_path, leads=("II", "V5"))
    beats = detect_record(record)
    ref = np.round(reference_beats(shared_data / "100") * 100 / 360).astype(int)
    sensitivity, ppv = match(ref, beats.samples, 100)
    assert sensitivity > 0.99 and ppv > 0.99, (sensitivity, ppv)


def test_ptb_s0010_re_is_82_bpm_at_1000_500_and_100_hz(shared_data, tmp_path):
    native = detect_record(shared_data / "s0010_re")
    assert (native.fs, native.lead, native.lead_choice) == (1000.0, "ii", "lead II")
    assert native.rate_bpm == pytest.approx(82, abs=1)  # the rate PTB's record is known for
    assert rate_class(native.rate_bpm) == "normal"
    for fs in (500, 100):
        beats = detect_record(resampled(shared_data / "s0010_re", fs, tmp_path))
        assert beats.fs == fs
        assert beats.rate_bpm == pytest.approx(native.rate_bpm, abs=1)
        same = match(np.round(native.samples * fs / 1000).astype(int), beats.samples, fs)
        assert same == (1.0, 1.0), fs  # the same beats, not only the same count


def test_challenge_js00001_is_tachycardic_at_500_100_and_1000_hz(shared_data, tmp_path):
    # Read off a plot of leads II and V1: 19 complexes from 0.46 s to 9.7 s (one more at 0.04 s is
    # cut by the record's start), mean RR 0.513 s -> 117 bpm (atrial fibrillation, irregular RR).
    native = detect_record(shared_data / "JS00001")
    assert (native.fs, native.lead) == (500.0, "II")
    assert len(native.samples) == 19
    assert native.rate_bpm == pytest.approx(117, abs=1.5)
    assert rate_class(native.rate_bpm) == "tachycardia"
    for fs in (100, 1000):
        beats = detect_record(resampled(shared_data / "JS00001", fs, tmp_path))
        assert match(np.round(native.samples * fs / 500).astype(int), beats.samples, fs) == (1.0, 1.0)


def test_without_lead_ii_the_lead_with_most_energy_is_used(shared_data, tmp_path):
    precordial = ("V1", "V2", "V3", "V4", "V5", "V6")
    record = resampled(shared_data / "s0010_re", 500, tmp_path, leads=precordial)
    beats = detect_record(record)
    assert beats.lead_choice == "most energy (no lead II)" and beats.lead in precordial
    signal = read_ecg(record, SignalSpec(fs=500, leads=precordial, n_samples=int(38.4 * 500)))
    from gemfactory.data.qrs import bandpass

    assert beats.lead == precordial[int(np.argmax((bandpass(signal, 500) ** 2).sum(axis=1)))]
    assert beats.rate_bpm == pytest.approx(82, abs=1.5)


def test_short_and_beatless_signals_give_a_reason_not_a_rate(tmp_path):
    short = detect(np.sin(np.linspace(0, 40, 300)), 100, lead="II")
    assert short.rate_bpm is None
    assert short.problem == f"3.0 s long; the detector needs at least {MIN_SECONDS:g} s"
    flat = detect(np.zeros(1000), 100, lead="II")
    assert flat.rate_bpm is None and flat.problem == "0 beats found on lead II; the detector needs at least 3"


@pytest.mark.parametrize("bpm, label", [(59.9, "bradycardia"), (60, "normal"), (100, "normal"),
                                        (100.1, "tachycardia")])
def test_rate_classes_follow_the_synthetic_answers_bounds(bpm, label):
    assert rate_class(bpm) == label


@pytest.mark.parametrize("fs", [100, 500, 1000])
@pytest.mark.parametrize("bpm", [40, 75, 150])
def test_synthetic_records_give_their_rate(fs, bpm):
    from gemfactory.data.synth import simulate_ecg

    signal = simulate_ecg(bpm, fs=fs, duration_s=10, rng=np.random.default_rng(bpm))
    assert detect(signal[1], fs).rate_bpm == pytest.approx(bpm, rel=0.05)


def test_tall_t_waves_are_not_counted_as_beats(shared_data):
    # PhysioNet 2015 alarm record v102s (wfdb-python's multi-segment sample, 250 Hz, 15 min): lead II
    # has fragmented QRS complexes and T waves taller than them; counting both gave 197 bpm. Lead V
    # (no tall T) and the pulse of the PLETH channel give about 101-105 bpm.
    record = shared_data / "wfdb-sample" / "multi-segment" / "fixed1" / "v102s"
    beats = detect_record(record)
    assert beats.lead == "II"
    lead_v = wfdb.rdrecord(str(record), m2s=True, channels=[1])
    assert lead_v.sig_name == ["V"]
    other = detect(lead_v.p_signal[:, 0], lead_v.fs, lead="V")
    assert beats.rate_bpm == pytest.approx(other.rate_bpm, rel=0.05)
    assert 90 < beats.rate_bpm < 110


def test_a_header_without_a_sample_count_is_named_not_read_as_empty(shared_data):
    beats = detect_record(shared_data / "wfdb-sample" / "a103l-no-len")
    assert beats.rate_bpm is None
    assert beats.problem == "its header gives 0 samples or no sample count; the detector needs the length"
