"""Regenerate tests/data/gem_ecg_reading_JS00001.npz by running GEM's own ECG-reading lines.

GEM reads a sample's ECG inline in ``LazySupervisedDataset.__getitem__`` (``llava/train/train.py``
of lanxiang1017/GEM at SEED_COMMIT): the statements from its ``#! read ecg files`` comment up to
``#! read image files``. This script takes exactly those lines out of the file (``--mirror``, a
bare git dir), and runs them as they are on ``tests/data/JS00001`` (12 leads, 500 Hz, 10 s), with
``self`` standing in for the dataset (its ``list_data_dict`` and ``data_args``, the only names the
lines use). The ECG tensor they produce is stored.

    python scripts/make_gem_ecg_reading_fixture.py --mirror /work/.mirror/lanxiang1017+GEM/repo
"""
from __future__ import annotations

import argparse
import os
import subprocess
import textwrap
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
import wfdb

SEED_REPO = "lanxiang1017/GEM"
SEED_COMMIT = "c8a580faae819c57c008e94fa080f5d3c6881769"
DATA = Path(__file__).resolve().parent.parent / "tests" / "data"
RECORD = "JS00001"


def seed_lines(mirror: str) -> str:
    train = subprocess.run(["git", f"--git-dir={mirror}", "show", f"{SEED_COMMIT}:llava/train/train.py"],
                           check=True, capture_output=True, text=True).stdout
    start = train.index("#! read ecg files")
    start = train.rindex("\n", 0, start) + 1
    end = train.index("#! read image files", start)
    end = train.rindex("\n", 0, end) + 1
    return textwrap.dedent(train[start:end])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mirror", required=True, help="bare git dir of lanxiang1017/GEM")
    args = parser.parse_args()
    code = seed_lines(args.mirror)
    dataset = SimpleNamespace(list_data_dict=[{"ecg": RECORD}],
                              data_args=SimpleNamespace(ecg_folder=str(DATA), ecg_seq_length=5000))
    names = {"self": dataset, "i": 0, "wfdb": wfdb, "np": np, "torch": torch, "os": os}
    exec(code, names)
    ecg = names["ecg"].numpy()
    out = DATA / f"gem_ecg_reading_{RECORD}.npz"
    np.savez_compressed(out, ecg=ecg, seed=np.array(f"{SEED_REPO}@{SEED_COMMIT}"))
    print(f"wrote {out}: {ecg.shape} {ecg.dtype}")


if __name__ == "__main__":
    main()
