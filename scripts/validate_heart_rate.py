"""Ask a trained checkpoint the heart-rate question on ECGs it never trained on; trains nothing.

    python scripts/validate_heart_rate.py runs/tiny-gem [--synthetic data/tiny-gem/test.json]

Sets (each printed with accuracy, per-class accuracy and the answer counts):

(a) held-out synthetic: the ``heart_rate`` records of the synthetic test split;
(b) an independent simulator: neurokit2 ``ecg_simulate(method="multileads")`` 12-lead records at
    250, 500 and 1000 Hz, ``--per-class`` of each class at each rate, at rates drawn inside each
    band (bradycardia 40-55, normal 65-95, tachycardia 110-150 bpm), written as WFDB records with
    ``wfdb.wrsamp`` under ``--sim-dir`` once (about 2 s a record) and reused after;
(c) real 12-lead records (``--real``; default: PTB s0010_re at 1000 Hz cut into three 10-s
    windows, JS00001 at 500 Hz, PTB-XL 00001_lr at 100 Hz, and the twelve 10-s 500 Hz Challenge
    2021 records of tests/data/real12, four each with sinus bradycardia, sinus rhythm and sinus
    tachycardia in their headers), labelled from the beat rate that gemfactory's QRS detector
    (:mod:`gemfactory.data.qrs`) measures on lead II;
(c') the same real records with only the header's sampling rate changed (x0.6 and x1.7 of the
    true rate), so the real waveforms play slower or faster: derived, not real slow/fast records;
(d) every set again with the ECG replaced by an all-zero tensor (the answer can then only come
    from the text): a model that reads the signal falls to the share of its one answer.

The question is the README's: "Does this ECG show bradycardia, a normal rate or tachycardia?"
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
QUESTION = "Does this ECG show bradycardia, a normal rate or tachycardia?"
CLASSES = ("bradycardia", "normal", "tachycardia")
SIM_BANDS = {"bradycardia": (40.0, 55.0), "normal": (65.0, 95.0), "tachycardia": (110.0, 150.0)}
SIM_RATES = (250, 500, 1000)
LEADS = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
REAL12 = ("E07500", "E07509", "E07512", "JS20007",  # sinus bradycardia in the header
          "E07506", "E07513", "HR06004", "HR06005",  # sinus rhythm
          "E07501", "E07502", "JS20013", "JS20016")  # sinus tachycardia
REAL = ("tests/data/s0010_re", "tests/data/JS00001", "tests/data/ptbxl/00001_lr",
        *(f"tests/data/real12/{name}" for name in REAL12))
TIME_SCALES = (0.6, 1.7)


def simulator_records(sim_dir: Path, per_class: int, seed: int = 2024) -> list[dict]:
    """neurokit2 records (made once, then read from ``sim_dir/manifest.json``)."""
    manifest = sim_dir / "manifest.json"
    if manifest.is_file():
        items = json.loads(manifest.read_text())
        if len(items) == per_class * len(CLASSES) * len(SIM_RATES):
            return items
    import neurokit2 as nk
    import wfdb

    sim_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    items = []
    for fs in SIM_RATES:
        for label in CLASSES:
            for k in range(per_class):
                hr = float(rng.uniform(*SIM_BANDS[label]))
                state = int(rng.integers(2**31))
                df = nk.ecg_simulate(duration=10, sampling_rate=fs, heart_rate=hr, method="multileads",
                                     random_state=state)
                name = f"nk_{fs}_{label[:5]}_{k:02d}"
                sig = df[list(LEADS)].to_numpy(dtype=np.float64)
                wfdb.wrsamp(name, fs=fs, units=["mV"] * 12, sig_name=list(LEADS), p_signal=sig,
                            fmt=["16"] * 12, adc_gain=[1000.0] * 12, baseline=[0] * 12, write_dir=str(sim_dir))
                items.append({"record": str(sim_dir / name), "label": label, "hr": round(hr, 1), "fs": fs})
        print(f"simulator: {fs} Hz done", file=sys.stderr)
    manifest.write_text(json.dumps(items, indent=1))
    return items


def measured_rate(record: str) -> float | None:
    from gemfactory.data.qrs import detect_record

    return detect_record(record).rate_bpm


def rate_label(bpm: float) -> str:
    return "bradycardia" if bpm < 60 else "tachycardia" if bpm > 100 else "normal"


def real_records(paths, work: Path) -> tuple[list[dict], list[dict]]:
    """10-s windows of each real record (own WFDB files under ``work``) and their time-scaled twins."""
    import wfdb

    work.mkdir(parents=True, exist_ok=True)
    real, scaled = [], []
    for path in paths:
        rec = wfdb.rdrecord(str(ROOT / path) if not Path(path).is_absolute() else path)
        names = [n for n in rec.sig_name]
        n10 = int(round(10 * rec.fs))
        for w in range(max(1, rec.sig_len // n10)):
            seg = rec.p_signal[w * n10:(w + 1) * n10]
            name = f"{rec.record_name}_w{w}"
            for scale in (1.0,) + TIME_SCALES:
                fs = rec.fs * scale
                rec_name = name if scale == 1.0 else f"{name}_x{round(scale * 10):02d}"
                wfdb.wrsamp(rec_name, fs=fs, units=["mV"] * len(names), sig_name=names, p_signal=seg,
                            fmt=["16"] * len(names), adc_gain=[1000.0] * len(names), baseline=[0] * len(names),
                            write_dir=str(work))
                bpm = measured_rate(str(work / rec_name))
                if bpm is None:
                    print(f"real: {rec_name}: no rate measured; left out", file=sys.stderr)
                    continue
                item = {"record": str(work / rec_name), "label": rate_label(bpm), "hr": round(bpm, 1),
                        "fs": round(fs, 1), "source": str(path)}
                (real if scale == 1.0 else scaled).append(item)
    return real, scaled


def synthetic_records(test_json: Path) -> list[dict]:
    items = json.loads(test_json.read_text())
    ecg_dir = test_json.parent / "ecg"
    return [{"record": str(ecg_dir / it["ecg"]), "label": it["label"]} for it in items
            if it.get("task") == "heart_rate"]


def parse(answer: str) -> str | None:
    import re

    text = answer.lower()
    hits = [c for c in CLASSES if re.search(rf"\b{c}\b", text)]
    return hits[0] if len(hits) == 1 else None


def ask(loaded, records: list[dict], zero_ecg: bool, batch_size: int = 32) -> list[str]:
    import torch

    import gemfactory.infer as gi

    spec = loaded.processor.signal_spec
    prompts = [gi.Prompt.ask(QUESTION, ecg=torch.zeros(spec.n_leads, spec.n_samples) if zero_ecg else r["record"])
               for r in records]
    return gi.generate(loaded, prompts, gi.GenerationSettings(max_new_tokens=24), batch_size=batch_size)


def score(name: str, records: list[dict], answers: list[str]) -> dict:
    preds = [parse(a) for a in answers]
    right = [p == r["label"] for p, r in zip(preds, records)]
    per_class = {}
    for c in CLASSES:
        idx = [i for i, r in enumerate(records) if r["label"] == c]
        if idx:
            per_class[c] = {"n": len(idx), "accuracy": round(sum(right[i] for i in idx) / len(idx), 3)}
    result = {"set": name, "n": len(records), "accuracy": round(sum(right) / max(len(records), 1), 3),
              "per_class": per_class, "answers": dict(Counter(str(p) for p in preds))}
    print(f"{name:<34} n={len(records):<4} accuracy {result['accuracy']:.3f}  per class "
          + ", ".join(f"{c} {v['accuracy']:.2f} ({v['n']})" for c, v in per_class.items())
          + f"  answers {result['answers']}")
    return result


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--synthetic", default="data/tiny-gem/test.json")
    ap.add_argument("--sim-dir", default="data/hr-validation/neurokit2")
    ap.add_argument("--per-class", type=int, default=10, help="simulator records per class and rate")
    ap.add_argument("--real", nargs="*", default=list(REAL))
    ap.add_argument("--work", default="data/hr-validation/real")
    ap.add_argument("--out", help="write the results as JSON here")
    args = ap.parse_args(argv)

    import gemfactory.infer as gi

    sets = {"(a) held-out synthetic": synthetic_records(Path(args.synthetic))}
    sim = simulator_records(Path(args.sim_dir), args.per_class)
    for fs in SIM_RATES:
        sets[f"(b) neurokit2 {fs} Hz"] = [r for r in sim if r["fs"] == fs]
    sets["(b) neurokit2 all rates"] = sim
    real, scaled = real_records(args.real, Path(args.work))
    sets["(c) real 12-lead"] = real
    sets["(c') real, time-scaled (derived)"] = scaled
    for r in real + scaled:
        print(f"  real {Path(r['record']).name}: {r['fs']} Hz, {r['hr']} bpm measured -> {r['label']}")

    t0 = time.perf_counter()
    loaded = gi.load_pretrained_model(args.checkpoint)
    results = []
    for name, recs in sets.items():
        results.append(score(name, recs, ask(loaded, recs, zero_ecg=False)))
    for name in ("(a) held-out synthetic", "(b) neurokit2 all rates", "(c) real 12-lead"):
        results.append(score(f"(d) zero ECG, {name[4:]}", sets[name], ask(loaded, sets[name], zero_ecg=True)))
    print(f"asked {sum(r['n'] for r in results)} questions in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
