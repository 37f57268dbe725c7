"""Fault injection end to end: corrupt a share of the synthetic dataset's ECG records, train the tiny
recipe on it, check that exactly the affected samples were skipped, evaluate, and check that a
stricter ``data.max_bad_fraction`` stops the run with one clear error line.

Steps (each a real ``gemfactory`` process):
  1. ``gemfactory data synth OUT/clean`` (or --data: an existing synthetic folder), copied to OUT/corrupt
  2. corrupt --fraction of the train records (seeded): half get a truncated .dat, half lose their .hea
  3. ``gemfactory train recipes/tiny-gem.yaml`` on OUT/corrupt with on_bad_sample=skip
  4. ``gemfactory eval`` of the result on the (intact) test split
  5. the same training with data.max_bad_fraction=0: must exit 2 naming a corrupt sample

Usage: python scripts/fault_injection.py [--out DIR] [--n-train 2400] [--n-test 300] [--max-steps N]
The full default (2400 samples, 2 epochs of recipes/tiny-gem.yaml) takes a long time on a small CPU;
--n-train 200 --n-test 40 runs in a few minutes. Prints a JSON summary; exits 1 when a check fails.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes" / "tiny-gem.yaml"


def gemfactory(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-m", "gemfactory.cli", *args], capture_output=True, text=True,
                          cwd=ROOT, env=env)
    print(f"$ gemfactory {' '.join(args)}  -> exit {proc.returncode}", file=sys.stderr)
    return proc


def corrupt(data: Path, fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """Break ``fraction`` of the train records; return (records, ids of the train samples using them)."""
    items = json.loads((data / "train.json").read_text())
    records = sorted({i["ecg"] for i in items if i.get("ecg")})
    broken = sorted(random.Random(seed).sample(records, max(1, round(fraction * len(records)))))
    for k, name in enumerate(broken):
        if k % 2 == 0:
            dat = data / "ecg" / f"{name}.dat"
            dat.write_bytes(dat.read_bytes()[: dat.stat().st_size // 3])
        else:
            (data / "ecg" / f"{name}.hea").unlink()
    return broken, sorted(i["id"] for i in items if i.get("ecg") in broken)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", help="work folder (default: a temporary folder, removed afterwards)")
    p.add_argument("--data", help="an existing `gemfactory data synth` folder to copy instead of making one")
    p.add_argument("--n-train", type=int, default=2400)
    p.add_argument("--n-test", type=int, default=300)
    p.add_argument("--fraction", type=float, default=0.05, help="share of the train records to corrupt")
    p.add_argument("--max-steps", type=int, help="cap the training steps (default: the recipe's 2 epochs)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    work = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="fault-injection-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        return run(args, work)
    finally:
        if not args.out:
            shutil.rmtree(work, ignore_errors=True)


def run(args, work: Path) -> int:
    clean = Path(args.data) if args.data else work / "clean"
    if not args.data:
        proc = gemfactory("-q", "data", "synth", str(clean), "--n-train", str(args.n_train),
                          "--n-test", str(args.n_test), "--seed", str(args.seed))
        if proc.returncode:
            sys.exit(proc.stderr)
    data = work / "corrupt"
    shutil.rmtree(data, ignore_errors=True)
    shutil.copytree(clean, data)
    broken, bad_ids = corrupt(data, args.fraction, args.seed)
    n_items = len(json.loads((data / "train.json").read_text()))
    summary = {"train_samples": n_items, "records_corrupted": len(broken), "samples_affected": len(bad_ids)}

    overrides = [f"data.train={data / 'train.json'}", f"data.eval={data / 'test.json'}",
                 f"data.image_folder={data / 'images'}", f"data.ecg_folder={data / 'ecg'}",
                 "data.on_bad_sample=skip", f"data.max_bad_fraction={min(1.0, 2 * len(bad_ids) / n_items)}",
                 "training.report_to=[]"]
    if args.max_steps:
        overrides.append(f"stages.finetune.max_steps={args.max_steps}")
    checks = {}

    run_dir = work / "run"
    proc = gemfactory("train", str(RECIPE), *overrides, f"training.output_dir={run_dir}")
    checks["train_finished"] = proc.returncode == 0
    found = re.findall(r"stage finetune skipped \d+ sample\(s\): (.*)", proc.stderr)
    skipped = sorted(found[-1].split(", ")) if found else []
    summary["samples_skipped"] = len(skipped)
    full_pass = not args.max_steps  # every sample is read at least once
    checks["skipped_are_the_corrupt_ones"] = (skipped == bad_ids) if full_pass else set(skipped) <= set(bad_ids)
    checks["no_traceback"] = "Traceback" not in proc.stderr
    if proc.returncode:
        print(proc.stderr[-3000:], file=sys.stderr)

    if checks["train_finished"]:
        proc = gemfactory("-q", "eval", str(run_dir), "--task", "synthetic", "--data", str(data / "test.json"),
                          "--out", str(work / "eval"))
        checks["eval_finished"] = proc.returncode == 0
        m = re.search(r"accuracy ([0-9.]+) on (\d+) samples", proc.stdout)
        summary["eval"] = {"accuracy": float(m.group(1)), "n": int(m.group(2))} if m else proc.stderr[-500:]

    proc = gemfactory("-q", "train", str(RECIPE), *overrides, "data.max_bad_fraction=0",
                      f"training.output_dir={work / 'strict'}")
    # the error line (the progress bar's last frame may follow it)
    err = proc.stderr[proc.stderr.rfind("error: "):].splitlines()[0] if "error: " in proc.stderr else proc.stderr[-500:]
    summary["strict_error"] = err
    first = re.search(r"first: (\S+):", err)
    checks["strict_stops_with_clear_error"] = (proc.returncode == 2 and "Traceback" not in proc.stderr
                                               and "data.max_bad_fraction=0" in err
                                               and bool(first) and first.group(1) in bad_ids)

    summary["checks"] = checks
    print(json.dumps(summary, indent=1))
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
