"""Beat morphology of the synthetic 12-lead ECG: a varied, rate-aware sum of Gaussian waves.

Every record draws its own heart: an electrical axis for each wave (P, QRS parts, T) projected
on the six frontal leads (Einthoven / Goldberger), a precordial R-wave progression with its own
transition zone, QRS width, P and T amplitude and polarity, optional notched (RSR') QRS and
asymmetric T. Timing follows the rate beat by beat: PR shortens and QT follows Framingham's
``QT = QTc - 0.154 (1 - RR)``, so at fast rates the next P rides on the T wave as on a real
tracing. Noise of the real kinds is added by :mod:`.synth_noise`.

All of it is vectorised numpy: each Gaussian is evaluated only on the samples within 5 sigma of
its centre and scatter-added into one row per wave (``bincount``), then ``amplitudes @ waves``.
"""
from __future__ import annotations

import numpy as np

from ..errors import DataError

# Waves: P, Q, R, R' (second R, usually absent), S, T1 (main T), T2 (T's slow tail).
WAVES = ("P", "Q", "R", "R2", "S", "T1", "T2")
FRONTAL_ANGLES_DEG = np.array([0.0, 60.0, 120.0, -150.0, -30.0, 90.0])  # I II III aVR aVL aVF


def as_rng(rng) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    return np.random.default_rng(rng)


def check_rate(heart_rate_bpm, fs, duration_s) -> float:
    hr = float(heart_rate_bpm)
    if not np.isfinite(hr) or not 10 <= hr <= 300:
        raise DataError(f"simulate_ecg: heart rate must be between 10 and 300 bpm, got {heart_rate_bpm}")
    if not fs > 0 or not duration_s > 0:
        raise DataError(f"simulate_ecg: fs and duration_s must be > 0, got fs={fs}, duration_s={duration_s}")
    return hr


def beat_times(hr: float, duration_s: float, rng: np.random.Generator) -> np.ndarray:
    """R-peak times (s), the first before t = 0: mean rate ``hr``, respiratory sinus arrhythmia
    (0.15-0.4 Hz, 0-6 % of RR) and beat-to-beat jitter (0.5-3 %)."""
    rr0 = 60.0 / hr
    n_beats = int(np.ceil(duration_s / rr0 * 1.15)) + 4
    resp_hz, resp_depth = rng.uniform(0.15, 0.4), rng.uniform(0.0, 0.06)
    jitter = rng.uniform(0.005, 0.03)
    t0 = -rng.uniform(0.0, rr0) - rr0
    phase = rng.uniform(0, 2 * np.pi)
    approx = t0 + rr0 * np.arange(n_beats)
    rr = rr0 * (1.0 + resp_depth * np.sin(2 * np.pi * resp_hz * approx + phase)
                + rng.normal(0.0, jitter, n_beats))
    rr = np.clip(rr, 0.5 * rr0, 1.5 * rr0)
    rr *= rr0 / rr.mean()  # the mean interval is the asked rate
    return t0 + np.concatenate([[0.0], np.cumsum(rr[:-1])]), rr


def _wave_timing(rr: np.ndarray, rng: np.random.Generator):
    """(offsets from R, sigmas) of every wave for every beat, each (n_waves, n_beats), in s."""
    n = len(rr)
    qrs_sigma = rng.uniform(0.008, 0.016)
    pr = rng.uniform(0.13, 0.20) * np.clip(rr / 0.8, 0.6, 1.3) ** 0.2  # PR shortens when fast
    qtc = rng.uniform(0.37, 0.45)
    qt = qtc - 0.154 * (1.0 - np.clip(rr, 0.25, 2.2))  # Framingham
    t_sigma = rng.uniform(0.035, 0.06) * np.sqrt(np.clip(rr, 0.3, 2.0) / 0.8)
    t_peak = qt - 2.2 * t_sigma
    spread = 3.2 * qrs_sigma
    one = np.ones(n)
    offsets = np.stack([
        -pr, -spread * one, 0.0 * one, rng.uniform(1.4, 2.2) * spread * one, spread * one,
        t_peak, t_peak + 1.3 * t_sigma,
    ])
    sigmas = np.stack([
        rng.uniform(0.018, 0.028) * one, 0.7 * qrs_sigma * one, qrs_sigma * one, 0.8 * qrs_sigma * one,
        0.9 * qrs_sigma * one, t_sigma, 1.4 * t_sigma,
    ])
    return offsets, sigmas


def _frontal(magnitude: float, axis_deg: float) -> np.ndarray:
    """Projection of a frontal-plane dipole on I, II, III, aVR, aVL, aVF (augmented leads x 0.87)."""
    proj = magnitude * np.cos(np.deg2rad(FRONTAL_ANGLES_DEG - axis_deg))
    proj[3:] *= np.sqrt(3) / 2
    return proj


def lead_amplitudes(rng: np.random.Generator) -> np.ndarray:
    """(12, n_waves) amplitudes in mV for one record's heart."""
    qrs_axis = rng.normal(50.0, 30.0)
    amps = np.zeros((12, len(WAVES)))
    r_mag = rng.uniform(0.4, 1.8) * (rng.uniform(0.2, 0.6) if rng.random() < 0.15 else 1.0)  # low voltage
    amps[:6, 0] = _frontal(rng.uniform(0.05, 0.35), rng.uniform(0.0, 80.0))  # P
    amps[:6, 1] = _frontal(rng.uniform(0.0, 0.2), qrs_axis + rng.uniform(120, 200))  # septal q
    amps[:6, 2] = _frontal(r_mag, qrs_axis)
    amps[:6, 4] = _frontal(rng.uniform(0.1, 0.6), qrs_axis + rng.uniform(150, 210))  # S
    # T from flat to taller than the QRS in some leads (as in hyperacute T or a low-voltage QRS)
    t_mag = np.exp(rng.uniform(np.log(0.1), np.log(1.2))) * (1 if rng.random() > 0.05 else -1)
    t_axis = qrs_axis + rng.uniform(-45, 45) * (2.5 if rng.random() < 0.25 else 1.0)  # wide QRS-T angle
    amps[:6, 5] = _frontal(t_mag, t_axis)
    amps[:6, 6] = _frontal(t_mag * rng.uniform(0.0, 0.4), t_axis)

    v = np.arange(1, 7, dtype=float)
    zone, width = rng.uniform(2.0, 4.5), rng.uniform(0.5, 1.2)
    rise = 1.0 / (1.0 + np.exp(-(v - zone) / width))
    amps[6:, 2] = rng.uniform(0.8, 2.2) * (0.08 + rise) * np.exp(-0.15 * np.clip(v - 5, 0, None))
    amps[6:, 4] = -rng.uniform(0.6, 1.8) * (1.0 - rise + 0.05)
    amps[6:, 1] = -rng.uniform(0.0, 0.15) * (v >= 4)
    amps[6:, 0] = rng.uniform(0.04, 0.15) * np.where(v == 1, rng.choice([-1.0, 0.5, 1.0]), 1.0)
    t_prec = np.exp(rng.uniform(np.log(0.15), np.log(1.1))) * np.minimum(1.0, 0.3 + 0.3 * v)
    t_prec[0] *= rng.choice([-1.0, -0.5, 0.5, 1.0])
    if rng.random() < 0.08:  # T inversion in the anterior leads
        t_prec[: int(rng.integers(2, 4))] *= -1
    amps[6:, 5] = t_prec
    amps[6:, 6] = t_prec * rng.uniform(0.0, 0.4)
    if rng.random() < 0.12:  # RSR' (bundle-branch-like notch), mostly right precordial
        amps[6:9, 3] = rng.uniform(0.2, 0.8) * np.array([1.0, 0.7, 0.3])
        amps[:6, 3] = _frontal(rng.uniform(0.05, 0.3), qrs_axis + rng.uniform(90, 270))
    # electrode position and skin: each precordial lead's own gain
    amps[6:] *= rng.uniform(0.75, 1.3, (6, 1))
    return amps


def clean_ecg(hr: float, fs: float, duration_s: float, rng: np.random.Generator) -> np.ndarray:
    """The noiseless 12-lead signal (12, round(fs * duration_s)) in mV."""
    n = int(round(fs * duration_s))
    beats, rr = beat_times(hr, duration_s, rng)
    offsets, sigma = _wave_timing(rr, rng)
    beat_gain = (1.0 + rng.normal(0.0, 0.03, len(rr))) * (
        1.0 + rng.uniform(0.0, 0.08) * np.sin(2 * np.pi * rng.uniform(0.15, 0.4) * beats))
    centre = beats[None, :] + offsets
    n_w = len(WAVES)
    half = int(np.ceil(5.0 * sigma.max() * fs))
    idx = np.round(centre * fs).astype(np.int64)[:, :, None] + np.arange(-half, half + 1)
    z = (idx / fs - centre[:, :, None]) / sigma[:, :, None]
    val = beat_gain[None, :, None] * np.exp(-0.5 * z * z)
    ok = (idx >= 0) & (idx < n)
    flat = (idx + (np.arange(n_w) * n)[:, None, None])[ok]
    waves = np.bincount(flat, weights=val[ok], minlength=n_w * n).reshape(n_w, n)
    return lead_amplitudes(rng) @ waves
