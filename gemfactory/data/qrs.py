"""A QRS detector for any WFDB record at its own sampling rate, and the heart rate it implies.

Detector (after Pan & Tompkins, 1985, simplified):

1. lead II (``MLII`` counts as II); without it, the lead whose band-passed signal has the most
   energy (the result says which lead and why);
2. zero-phase 2nd-order Butterworth band-pass, 5-15 Hz (the QRS band; P/T waves and baseline
   wander fall outside it);
3. squared first derivative, smoothed by a centred 120 ms moving average (the energy envelope);
4. peaks of the envelope at least :data:`REFRACTORY_S` apart and standing out from it (the envelope
   falls by half their height on both sides, so a notched complex counts once), accepted against an adaptive
   threshold ``noise + 0.25 (signal - noise)`` whose running signal and noise levels follow each
   accepted and rejected peak; when no beat came for 1.66 mean RR intervals, the largest peak in
   that gap is searched for again at half the threshold; a peak within 360 ms of a beat whose
   steepest band-passed slope is under half the beat's is taken for its T wave;
5. each beat is placed at the largest absolute band-passed value within 80 ms of its envelope peak.

The rate is the mean over the RR intervals, ``60 / mean(RR)`` bpm. A record shorter than
:data:`MIN_SECONDS` or with fewer than :data:`MIN_BEATS` beats gives no rate; ``problem`` says why.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..ecg.spec import SignalSpec
from .ecg_io import canonical_lead, inspect_record, read_ecg

BAND_HZ = (5.0, 15.0)
ENVELOPE_S = 0.12
REFRACTORY_S = 0.2  # no two beats closer than this (300 bpm)
REFINE_S = 0.08
SEARCHBACK_RR = 1.66
# an envelope peak is a complex of its own only when the envelope falls by at least this fraction of
# its height on both sides (wide or notched complexes have several peaks on one bump)
SEPARATE = 0.5
# a peak this soon after a beat whose steepest slope is under T_SLOPE of the beat's is its T wave
T_WAVE_S = 0.36
T_SLOPE = 0.5
SLOPE_BAND_HZ = (1.0, 40.0)  # the slopes compared: QRS detail kept, baseline and mains hum removed
MIN_SECONDS = 5.0
MIN_BEATS = 3
LEARN_S = 2.0  # the first seconds set the initial signal and noise levels
# rate classes of the heart-rate question (the synthetic data's answers use the same bounds)
BRADY_BELOW_BPM = 60.0
TACHY_ABOVE_BPM = 100.0


@dataclass
class Beats:
    fs: float
    lead: str  # the lead the beats were found on, as the record names it
    lead_choice: str  # why this lead: "lead II" or "most energy (no lead II)"
    samples: np.ndarray  # beat positions, sample indices at ``fs``
    duration_s: float
    problem: str | None = None  # why no rate can be given (too short, too few beats)
    rr_s: np.ndarray = field(init=False)

    def __post_init__(self):
        self.rr_s = np.diff(self.samples) / self.fs if len(self.samples) > 1 else np.zeros(0)
        if self.problem is None:
            if self.duration_s < MIN_SECONDS:
                self.problem = f"{self.duration_s:.1f} s long; the detector needs at least {MIN_SECONDS:g} s"
            elif len(self.samples) < MIN_BEATS:
                self.problem = (f"{len(self.samples)} beats found on lead {self.lead}; the detector needs "
                                f"at least {MIN_BEATS}")

    @property
    def rate_bpm(self) -> float | None:
        return None if self.problem else float(60.0 / self.rr_s.mean())


def rate_class(bpm: float) -> str:
    """``bradycardia`` (< 60 bpm), ``tachycardia`` (> 100 bpm), else ``normal``."""
    if bpm < BRADY_BELOW_BPM:
        return "bradycardia"
    if bpm > TACHY_ABOVE_BPM:
        return "tachycardia"
    return "normal"


def detect_record(record_path) -> Beats:
    """Beats of a WFDB record (``.hea`` path with or without extension), at its own rate."""
    info = inspect_record(record_path)
    fs, n, leads = info["fs"], info["n_samples"], info["leads"]
    if n < 1:
        return Beats(fs, leads[0] if leads else "-", "-", np.zeros(0, int), 0.0,
                     problem="its header gives 0 samples or no sample count; the detector needs the length")
    ii = next((name for name in leads if canonical_lead(name) == "II"), None)
    chosen = [ii] if ii else list(dict.fromkeys(leads))
    signal = read_ecg(record_path, SignalSpec(fs=fs, leads=tuple(chosen), n_samples=n, allow_derived_leads=False))
    if ii:
        return detect(signal[0], fs, lead=ii, lead_choice="lead II")
    filtered = bandpass(signal, fs)
    best = int(np.argmax((filtered ** 2).sum(axis=1)))
    return detect(signal[best], fs, lead=chosen[best], lead_choice="most energy (no lead II)")


def bandpass(signal: np.ndarray, fs: float, band=BAND_HZ) -> np.ndarray:
    """Zero-phase 2nd-order Butterworth band-pass of ``band`` Hz along the last axis."""
    from scipy.signal import butter, sosfiltfilt  # heavy import: only when detecting

    high = min(band[1], 0.45 * fs)
    sos = butter(2, [band[0], high], btype="bandpass", fs=fs, output="sos")
    if signal.shape[-1] <= 3 * (2 * len(sos) + 1):  # too short for sosfiltfilt's padding
        return np.zeros_like(signal, dtype=np.float64)
    return sosfiltfilt(sos, np.asarray(signal, dtype=np.float64), axis=-1)


def envelope(filtered: np.ndarray, fs: float) -> np.ndarray:
    width = max(1, round(ENVELOPE_S * fs))
    energy = np.gradient(filtered) ** 2
    return np.convolve(energy, np.ones(width) / width, mode="same")


def detect(signal: np.ndarray, fs: float, lead: str = "?", lead_choice: str = "given") -> Beats:
    """Beats of one lead ``signal`` (mV) sampled at ``fs`` Hz."""
    from scipy.ndimage import maximum_filter1d  # heavy imports: only when detecting
    from scipy.signal import find_peaks

    signal = np.nan_to_num(np.asarray(signal, dtype=np.float64))
    filtered = bandpass(signal, fs)
    env = envelope(filtered, fs)
    refractory = max(1, round(REFRACTORY_S * fs))
    peaks, props = find_peaks(env, distance=refractory, prominence=0)
    peaks = peaks[props["prominences"] >= SEPARATE * env[peaks]]  # one bump per complex
    radius = max(1, round(REFINE_S * fs))
    slope = np.abs(np.gradient(bandpass(signal, fs, SLOPE_BAND_HZ)))
    steepness = maximum_filter1d(slope, 2 * radius + 1)  # the steepest slope near each sample
    beats = _pick(peaks, env, steepness, fs)
    starts = [max(0, b - radius) for b in beats]
    placed = np.unique(np.array([lo + int(np.argmax(np.abs(filtered[lo:b + radius + 1])))
                                 for lo, b in zip(starts, beats)], dtype=int))
    return Beats(float(fs), lead, lead_choice, placed, len(signal) / fs)


def _pick(peaks: np.ndarray, env: np.ndarray, steepness: np.ndarray, fs: float) -> list[int]:
    """Adaptive-threshold selection of envelope peaks, with search-back for missed beats and
    T waves told apart by their slope."""
    if len(peaks) == 0 or not env.max() > 0:
        return []
    learn = peaks[peaks < LEARN_S * fs]
    heights = env[learn] if len(learn) else env[peaks[:4]]
    signal_level, noise_level = 0.5 * heights.max(), 0.5 * np.median(env[peaks])
    beats: list[int] = []

    def t_wave(p) -> bool:
        return bool(beats) and p - beats[-1] < T_WAVE_S * fs and steepness[p] < T_SLOPE * steepness[beats[-1]]

    for p in peaks:
        threshold = noise_level + 0.25 * (signal_level - noise_level)
        if len(beats) > 1:
            mean_rr = (beats[-1] - beats[-9:][0]) / (len(beats[-9:]) - 1)  # the last 8 RR intervals
            if p - beats[-1] > SEARCHBACK_RR * mean_rr:
                missed = peaks[(peaks > beats[-1] + REFRACTORY_S * fs) & (peaks < p - REFRACTORY_S * fs)]
                missed = [m for m in missed if not t_wave(m)]
                if missed:
                    best = max(missed, key=lambda m: env[m])
                    if env[best] > 0.5 * threshold:
                        beats.append(int(best))
                        signal_level = 0.25 * env[best] + 0.75 * signal_level
        if env[p] > threshold and not t_wave(p):
            beats.append(int(p))
            signal_level = 0.125 * env[p] + 0.875 * signal_level
        else:
            noise_level = 0.125 * env[p] + 0.875 * noise_level
    return beats
