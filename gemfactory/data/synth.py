"""Synthetic 12-lead ECG dataset for the tiny recipe.

:func:`simulate_ecg` makes a varied, realistic 12-lead recording at a given heart rate
(vectorised numpy: beat morphology in :mod:`.synth_waves`, artefacts in :mod:`.synth_noise`).
:func:`synthesize` writes a small LLaVA-style dataset from it::

    out_dir/ecg/<id>.hea/.dat      WFDB records (12 leads I..V6, 16-bit, 1 uV resolution,
                                   each at its own rate from 100 to 1000 Hz)
    out_dir/images/<id>.png        rendered sheets for a random subset of records
    out_dir/train.json, test.json  conversation items; test records never appear in train

Classes: ``bradycardia`` (38-55 bpm), ``normal`` (65-95 bpm), ``tachycardia`` (110-165 bpm),
balanced in each split. Item kinds: ``ecg`` (``<ecg>`` + heart-rate question), ``ecg_image``
(``<ecg>`` + ``<image>`` of the same record, heart-rate question), ``image`` (grid colour
question) and ``text`` (textbook questions, no signal). Every record of the image subset gives
one ``ecg_image`` and one ``image`` item; the other records give one ``ecg`` item; text items
make up about a tenth of each split. With ``image_fraction=0.3`` that is ~49 / 21 / 21 / 9 %.
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Iterator

import numpy as np

from ..ecg.spec import STANDARD_LEADS
from ..errors import DataError
from ..fileio import atomic_open, write_text_atomic
from .synth_noise import add_artefacts
from .synth_waves import as_rng, check_rate, clean_ecg

__all__ = [
    "CLASSES",
    "CLASS_HR_RANGES",
    "GRID_CHOICES",
    "SAMPLING_RATES",
    "simulate_ecg",
    "synthesize",
]

CLASSES = ("bradycardia", "normal", "tachycardia")
CLASS_HR_RANGES = {"bradycardia": (38.0, 55.0), "normal": (65.0, 95.0), "tachycardia": (110.0, 165.0)}
# Rates the records are written at (``synthesize(fs=None)``), with their shares: the encoder's
# SignalSpec resamples them, as it does real records from 100 Hz (PTB-XL) to 1000 Hz (PTB).
SAMPLING_RATES = {100: 0.3, 125: 0.1, 250: 0.2, 360: 0.1, 500: 0.2, 1000: 0.1}
GRID_CHOICES = ("red", "blue", "green")

HR_QUESTIONS = (
    "What is the rhythm shown in this ECG?",
    "Is the heart rate in this recording slow, normal or fast?",
    "Classify the heart rate of this ECG.",
    "Describe the rate of the rhythm in this tracing.",
    "Does this ECG show bradycardia, a normal rate or tachycardia?",
    "How would you characterise the heart rate in this recording?",
)
HR_ANSWERS = {
    "bradycardia": "Bradycardia: the heart rate is below 60 beats per minute.",
    "normal": "Normal sinus rhythm: the heart rate is between 60 and 100 beats per minute.",
    "tachycardia": "Tachycardia: the heart rate is above 100 beats per minute.",
}
GRID_QUESTIONS = (
    "What colour is the grid on this ECG printout?",
    "Which colour are the grid lines of this ECG sheet?",
    "Name the colour of the background grid in this image.",
    "What is the colour of the millimetre grid on this ECG?",
)
# (question, answer, short label)
TEXT_QA = (
    ("How many leads does a standard ECG have?", "A standard ECG has twelve leads.", "twelve"),
    ("What is the standard paper speed of an ECG?", "The standard paper speed is 25 mm/s.", "25 mm/s"),
    ("What is the standard amplitude calibration of an ECG?", "The standard calibration is 10 mm per millivolt.", "10 mm/mV"),
    ("At 25 mm/s, how long does one small 1 mm square last?", "One small square lasts 0.04 seconds.", "0.04 s"),
    ("At 25 mm/s, how long does one large 5 mm square last?", "One large square lasts 0.2 seconds.", "0.2 s"),
    ("Which ECG wave shows atrial depolarisation?", "The P wave shows atrial depolarisation.", "P wave"),
    ("Which part of the ECG shows ventricular depolarisation?", "The QRS complex shows ventricular depolarisation.", "QRS complex"),
    ("Which ECG wave shows ventricular repolarisation?", "The T wave shows ventricular repolarisation.", "T wave"),
    ("What resting heart rate is normal for an adult?", "A normal resting adult heart rate is 60 to 100 beats per minute.", "60-100 bpm"),
    ("Which are the augmented limb leads?", "The augmented limb leads are aVR, aVL and aVF.", "aVR, aVL, aVF"),
)

# ---------------------------------------------------------------------------------------------
# Simulation


def simulate_ecg(heart_rate_bpm: float, fs: float = 100, duration_s: float = 10, rng=None) -> np.ndarray:
    """A synthetic 12-lead ECG, shape (12, round(fs * duration_s)), in mV, leads in standard order.

    The heart (axes, morphology, rate-dependent PR/QT, RR variability) comes from
    :mod:`.synth_waves`, the artefacts (baseline wander, EMG, mains, electrode motion, white
    noise, gain) from :mod:`.synth_noise`. III, aVR, aVL and aVF are computed from the recorded
    I and II, noise included, as an electrocardiograph does. ``rng``: a
    ``numpy.random.Generator``, a seed, or None (fresh entropy).
    """
    hr = check_rate(heart_rate_bpm, fs, duration_s)
    rng = as_rng(rng)
    sig = add_artefacts(clean_ecg(hr, fs, duration_s, rng), fs, rng)
    lead_i, lead_ii = sig[0], sig[1]
    sig[2:6] = np.stack([lead_ii - lead_i, -(lead_i + lead_ii) / 2, lead_i - lead_ii / 2, lead_ii - lead_i / 2])
    return sig


# ---------------------------------------------------------------------------------------------
# Files


def _write_record(record_path: Path, signal_mv: np.ndarray, fs: float, leads=STANDARD_LEADS) -> None:
    """Write ``signal_mv`` (n_leads, T) as a WFDB record: ``<path>.hea`` + ``<path>.dat``.

    Format 16 (little-endian int16, frames interleaved), units mV, ADC gain 1000 per mV,
    baseline 0, NaN stored as the WFDB invalid sample -32768. The files are byte-identical to
    ``wfdb.wrsamp(..., fmt=["16"] * n, adc_gain=[1000.0] * n, baseline=[0] * n)`` (a test checks
    this) but written directly: wrsamp's header code costs ~70 ms a record, this ~0.3 ms.
    """
    record_path = Path(record_path)
    record_path.parent.mkdir(parents=True, exist_ok=True)
    sig = np.asarray(signal_mv, dtype=np.float64)
    n_leads, n_samples = sig.shape
    if len(leads) != n_leads:
        raise DataError(f"synth: {len(leads)} lead names for a signal with {n_leads} rows")
    gain = 1000.0
    nan = np.isnan(sig)
    digital = np.clip(np.round(np.where(nan, 0.0, sig) * gain), -32767, 32767).astype(np.int64)
    digital[nan] = -32768
    checksums = digital.sum(axis=1) % 65536
    name = record_path.name
    fs_txt = str(int(fs)) if float(fs).is_integer() else repr(float(fs))
    lines = [f"{name} {n_leads} {fs_txt} {n_samples}"]
    for i, lead in enumerate(leads):
        init = int(digital[i, 0]) if n_samples else 0
        lines.append(f"{name}.dat 16 {gain!r}(0)/mV 16 0 {init} {int(checksums[i])} 0 {lead}")
    record_path.with_name(name + ".dat").write_bytes(digital.T.astype("<i2").tobytes())
    record_path.with_name(name + ".hea").write_text("\n".join(lines) + "\n", encoding="ascii")


def _write_json_atomic(path: Path, obj) -> None:
    with atomic_open(path) as fh:
        json.dump(obj, fh, indent=1, ensure_ascii=False)
        fh.write("\n")


def _record_signal(hr: float, fs: float, seed: int, index: int) -> np.ndarray:
    """Signal of record ``index``: its own random stream, rounded to the 1 uV the record stores."""
    sig = simulate_ecg(hr, fs=fs, duration_s=10, rng=np.random.default_rng([seed, index]))
    return np.round(sig * 1000.0) / 1000.0


def _start_method() -> str:
    """``fork`` where safe (POSIX, no other Python threads): starts fast and, unlike spawn and
    forkserver, does not re-import the caller's ``__main__`` (scripts need no main guard)."""
    import multiprocessing as mp
    import threading

    methods = mp.get_all_start_methods()
    if "fork" in methods and threading.active_count() == 1:
        return "fork"
    return "forkserver" if "forkserver" in methods else "spawn"


def _render_job(job) -> None:
    """Regenerate one record's signal (cheaper than shipping it) and save its sheet."""
    from ..ecg.render import save_ecg_image

    path, hr, fs, seed, index, grid, dpi = job
    save_ecg_image(path, _record_signal(hr, fs, seed, index), fs, dpi=dpi, grid_color=grid, seed=index)


# ---------------------------------------------------------------------------------------------
# Dataset


def _split_records(rng: np.random.Generator, n: int, first_index: int, image_fraction: float, split: str,
                   fs: float | None):
    labels = np.array([CLASSES[i % 3] for i in range(n)])
    labels = labels[rng.permutation(n)]
    n_img = int(round(image_fraction * n))
    has_image = np.zeros(n, dtype=bool)
    has_image[rng.choice(n, size=n_img, replace=False)] = True
    rates, shares = list(SAMPLING_RATES), list(SAMPLING_RATES.values())
    records = []
    for k in range(n):
        lo, hi = CLASS_HR_RANGES[labels[k]]
        records.append(
            {
                "id": f"{split}_{first_index + k:05d}",
                "seed": first_index + k,
                "label": str(labels[k]),
                "hr": float(rng.uniform(lo, hi)),
                "grid": str(rng.choice(GRID_CHOICES)) if has_image[k] else None,
                "fs": float(fs) if fs is not None else float(rng.choice(rates, p=shares)),
            }
        )
    return records


def _items_for_split(rng: np.random.Generator, records: list, split: str) -> list:
    items = []
    for rec in records:
        q = HR_QUESTIONS[int(rng.integers(len(HR_QUESTIONS)))]
        answer = HR_ANSWERS[rec["label"]]
        if rec["grid"] is None:
            items.append(_item(rec["id"], "heart_rate", rec["label"], "<ecg>\n" + q, answer, ecg=rec["id"]))
            continue
        image = rec["id"] + ".png"
        items.append(
            _item(rec["id"] + "_ei", "heart_rate", rec["label"], "<ecg>\n<image>\n" + q, answer,
                  ecg=rec["id"], image=image)
        )
        gq = GRID_QUESTIONS[int(rng.integers(len(GRID_QUESTIONS)))]
        items.append(
            _item(rec["id"] + "_img", "grid_color", rec["grid"], "<image>\n" + gq,
                  f"The grid is {rec['grid']}.", image=image)
        )
    n_text = int(round(len(items) / 9))  # text items ~ 10 % of the split
    for k in range(n_text):
        question, answer, label = TEXT_QA[int(rng.integers(len(TEXT_QA)))]
        items.append(_item(f"{split}_text_{k:05d}", "text", label, question, answer))
    order = rng.permutation(len(items))
    return [items[i] for i in order]


def _item(item_id, task, label, question, answer, *, ecg=None, image=None) -> dict:
    item = {"id": item_id}
    if ecg is not None:
        item["ecg"] = ecg
    if image is not None:
        item["image"] = image
    item["conversations"] = [{"from": "human", "value": question}, {"from": "gpt", "value": answer}]
    item["task"] = task
    item["label"] = label
    return item


def _kind(item: dict) -> str:
    if "ecg" in item:
        return "ecg_image" if "image" in item else "ecg"
    return "image" if "image" in item else "text"


def _write_files(records: list, ecg_dir: Path, img_dir: Path, seed: int, image_dpi: float, workers: int) -> int:
    """Every record's WFDB files and the sheets of the image subset; returns the number of sheets."""
    render_jobs = [
        (str(img_dir / f"{rec['id']}.png"), rec["hr"], rec["fs"], seed, rec["seed"], rec["grid"], image_dpi)
        for rec in records
        if rec["grid"] is not None
    ]
    if workers > 1 and len(render_jobs) >= 16:
        # Worker processes render the sheets while this process writes the WFDB records.
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context(_start_method())) as pool:
            done = pool.map(_render_job, render_jobs, chunksize=max(1, len(render_jobs) // (workers * 8)))
            for rec in records:
                _write_record(ecg_dir / rec["id"], _record_signal(rec["hr"], rec["fs"], seed, rec["seed"]), rec["fs"])
            for _ in done:  # re-raises a worker's error
                pass
    else:
        for rec in records:
            _write_record(ecg_dir / rec["id"], _record_signal(rec["hr"], rec["fs"], seed, rec["seed"]), rec["fs"])
        for job in render_jobs:
            _render_job(job)
    return len(render_jobs)


def synthesize(
    out_dir,
    n_train: int = 2400,
    n_test: int = 300,
    seed: int = 0,
    fs: float | None = None,
    image_fraction: float = 0.3,
    image_dpi: float = 30,
    *,
    workers: int | None = None,
) -> dict:
    """Write the synthetic dataset under ``out_dir`` and return a summary.

    ``n_train`` / ``n_test`` count records (10 s, 12 leads at ``fs`` Hz; None: each record at a
    rate drawn from :data:`SAMPLING_RATES`); ``image_fraction`` of
    each split is also rendered as a sheet at ``image_dpi``. ``workers`` render processes
    (default: up to 2, by available CPUs). The same arguments always give the same files.
    Summary keys: ``out_dir``, ``records`` (per split), ``images``, ``items`` (per split and
    kind), ``classes`` and ``grid_colors`` (per split), ``elapsed_s``.
    """
    t_start = time.perf_counter()
    if n_train < 0 or n_test < 0 or n_train + n_test == 0:
        raise DataError(f"synthesize: n_train and n_test must be >= 0 and not both 0, got {n_train}, {n_test}")
    if not 0.0 <= image_fraction <= 1.0:
        raise DataError(f"synthesize: image_fraction must be in [0, 1], got {image_fraction}")
    if fs is not None and not fs > 0:
        raise DataError(f"synthesize: fs must be > 0, got {fs}")
    if int(seed) != seed or seed < 0:
        raise DataError(f"synthesize: seed must be an integer >= 0, got {seed!r}")
    seed = int(seed)
    if workers is None:
        workers = min(2, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)

    out = Path(out_dir)
    ecg_dir, img_dir = out / "ecg", out / "images"
    for folder in (ecg_dir, img_dir):
        folder.mkdir(parents=True, exist_ok=True)

    rng = np.random.default_rng(seed)
    splits = {
        "train": _split_records(rng, n_train, 0, image_fraction, "train", fs),
        "test": _split_records(rng, n_test, n_train, image_fraction, "test", fs),
    }
    items = {name: _items_for_split(rng, recs, name) for name, recs in splits.items()}

    n_images = _write_files([rec for recs in splits.values() for rec in recs], ecg_dir, img_dir, seed,
                            image_dpi, workers)
    for name, its in items.items():
        _write_json_atomic(out / f"{name}.json", its)

    return _summary(out, splits, items, n_images, time.perf_counter() - t_start)


def _summary(out: Path, splits: dict, items: dict, n_images: int, elapsed_s: float) -> dict:
    return {
        "out_dir": str(out),
        "records": {name: len(recs) for name, recs in splits.items()},
        "images": n_images,
        "items": {name: dict(sorted(Counter(_kind(i) for i in its).items())) for name, its in items.items()},
        "classes": {name: dict(sorted(Counter(r["label"] for r in recs).items())) for name, recs in splits.items()},
        "grid_colors": {
            name: dict(sorted(Counter(r["grid"] for r in recs if r["grid"]).items())) for name, recs in splits.items()
        },
        "elapsed_s": round(elapsed_s, 3),
    }


# the synthetic data of tiny twins (gemfactory recipe check --tiny) ---------------------------------
TWIN_RECORDS = 24  # records in the synthetic data of a tiny check


def gem_layout_items(items: list[dict]) -> list[dict]:
    """Samples in GEM's form: a sample with an ECG has one ``<image>`` placeholder standing for
    the ECG tokens (then the image tokens, when it has an image) instead of ``<ecg>``."""
    out = []
    for item in items:
        item = json.loads(json.dumps(item))
        if item.get("ecg"):
            for turn in item.get("conversations", []):
                if turn.get("from") in ("human", "user") and isinstance(turn.get("value"), str):
                    text = turn["value"].replace("<ecg>\n", "").replace("<ecg>", "")
                    if "<image>" not in text:
                        text = "<image>\n" + text
                    turn["value"] = text
                    break
        out.append(item)
    return out


def gem_layout_file(data_dir: Path) -> Path:
    """``train_gem_layout.json`` beside ``train.json``: its items in GEM's form (remade when older)."""
    target = data_dir / "train_gem_layout.json"
    source = data_dir / "train.json"
    if source.is_file() and (not target.is_file() or target.stat().st_mtime < source.stat().st_mtime):
        write_text_atomic(target, json.dumps(gem_layout_items(json.loads(source.read_text())), indent=1))
    return target


@contextlib.contextmanager
def synthetic_data(folder: str | Path | None = None, n_train: int = TWIN_RECORDS) -> Iterator[Path]:
    """A synthetic dataset folder: ``folder`` (made there unless it has a train.json), else a
    temporary one removed afterwards."""
    if folder is not None:
        folder = Path(folder)
        if not (folder / "train.json").is_file():
            synthesize(folder, n_train=n_train, n_test=0, seed=0)
        yield folder
        return
    with tempfile.TemporaryDirectory(prefix="gemfactory-tiny-") as tmp:
        synthesize(tmp, n_train=n_train, n_test=0, seed=0)
        yield Path(tmp)
