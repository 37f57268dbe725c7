"""Recording artefacts of the kinds real ECGs carry, for the synthetic generator.

Baseline wander (respiration and movement: a few slow sines), muscle (EMG: band-limited noise
in bursts), powerline interference (50 or 60 Hz and a harmonic, only where the sampling rate
can hold it, as a real recorder's anti-alias filter would remove it otherwise), electrode motion
(steps that decay back and short transients) and amplifier white noise; then the overall gain
(body habitus, amplifier) and each lead's own gain. Amplitudes are mV; every level is drawn per
record, most of them small, some records clean and a few noisy.
"""
from __future__ import annotations

import numpy as np


def _baseline_wander(n: int, fs: float, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(n) / fs
    k = int(rng.integers(1, 4))
    freqs = rng.uniform(0.05, 0.5, k)
    level = rng.choice([0.02, 0.1, 0.3, 0.6], p=[0.3, 0.35, 0.25, 0.1])
    amp = level * rng.uniform(0.2, 1.0, (12, k))
    phase = rng.uniform(0, 2 * np.pi, (12, k))
    # sum_k a_k sin(w_k t + phi_k), written as two matrix products over k
    s, c = np.sin(2 * np.pi * freqs[:, None] * t), np.cos(2 * np.pi * freqs[:, None] * t)
    return (amp * np.cos(phase)) @ s + (amp * np.sin(phase)) @ c


def _muscle(n: int, fs: float, rng: np.random.Generator) -> np.ndarray:
    """EMG: white noise smoothed to below ~min(150, fs/2) Hz and differenced (no slow part),
    switched on in bursts."""
    rms = rng.choice([0.0, 0.01, 0.03, 0.08], p=[0.3, 0.35, 0.25, 0.1])
    if rms == 0.0:
        return np.zeros((12, n))
    raw = np.diff(rng.normal(0.0, 1.0, (12, n + 1)), axis=1)
    envelope = np.ones(n)
    for _ in range(int(rng.integers(0, 4))):
        start, length = rng.integers(0, n), int(rng.uniform(0.3, 2.5) * fs)
        envelope[start:start + length] += rng.uniform(1.0, 4.0)
    lead_level = rng.uniform(0.3, 1.0, (12, 1))
    return rms * lead_level * raw * envelope / np.sqrt(2.0)


def _powerline(n: int, fs: float, rng: np.random.Generator) -> np.ndarray:
    mains = float(rng.choice([50.0, 60.0]))
    if fs < 2.5 * mains or rng.random() < 0.4:
        return np.zeros((12, n))
    t = np.arange(n) / fs
    amp = rng.uniform(0.005, 0.12) * rng.uniform(0.3, 1.0, (12, 1))
    out = amp * np.sin(2 * np.pi * mains * t + rng.uniform(0, 2 * np.pi))
    if fs > 2.5 * 3 * mains:
        out += 0.2 * amp * np.sin(2 * np.pi * 3 * mains * t + rng.uniform(0, 2 * np.pi))
    return out


def _electrode_motion(n: int, fs: float, rng: np.random.Generator) -> np.ndarray:
    """A few events, each on a random subset of leads: a step that relaxes back (tau 0.2-1.5 s)."""
    out = np.zeros((12, n))
    if rng.random() < 0.6:
        return out
    t = np.arange(n) / fs
    for _ in range(int(rng.integers(1, 4))):
        t0, tau = rng.uniform(0, n / fs), rng.uniform(0.2, 1.5)
        leads = rng.random(12) < rng.uniform(0.1, 0.6)
        shape = np.where(t >= t0, np.exp(-(t - t0) / tau), 0.0)
        out[leads] += rng.uniform(-0.8, 0.8, (int(leads.sum()), 1)) * shape
    return out


def add_artefacts(clean: np.ndarray, fs: float, rng: np.random.Generator) -> np.ndarray:
    """``clean`` (12, n) mV with wander, EMG, mains, electrode motion, white noise and gain."""
    n = clean.shape[1]
    sig = clean + _baseline_wander(n, fs, rng) + _muscle(n, fs, rng)
    sig += _powerline(n, fs, rng) + _electrode_motion(n, fs, rng)
    sig += rng.normal(0.0, rng.uniform(0.003, 0.025), sig.shape)
    gain = np.exp(rng.uniform(np.log(0.5), np.log(1.8)))
    return sig * gain * rng.uniform(0.85, 1.15, (12, 1))
