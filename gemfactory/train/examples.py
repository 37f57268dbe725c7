"""Example records shipped with a trained run: ``RUN/examples``, what ``gemfactory app`` offers.

A few ECG records of the recipe's held-out ``data.eval`` items (never training items), one per
label first, are copied whole (header and the signal files it names) into ``RUN/examples``. A
recipe without ``data.eval``, or whose eval items have no ECG, ships none.
"""
from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import wfdb

from ..config import DataConfig
from ..data.dataset import load_items

log = logging.getLogger(__name__)
EXAMPLES = "examples"


def held_out_records(data: DataConfig, limit: int) -> list[Path]:
    """Up to ``limit`` distinct ECG records of the eval items, covering as many labels as possible."""
    if not data.eval:
        return []
    records: dict[Path, str] = {}
    for item in load_items(data.eval):
        if isinstance(item.get("ecg"), str):
            records.setdefault(Path(data.ecg_folder) / item["ecg"], str(item.get("label", "")))
    chosen, labels = [], set()
    for path, label in records.items():  # one per label first, in the file's order
        if label not in labels:
            chosen.append(path)
            labels.add(label)
    chosen += [p for p in records if p not in chosen]
    return chosen[:limit]


def record_files(record: Path) -> list[Path]:
    """The header of ``record`` and the signal files it names."""
    header = wfdb.rdheader(str(record))
    names = sorted(set(header.file_name or []))
    return [record.with_name(record.name + ".hea"), *(record.with_name(n) for n in names)]


def copy_examples(data: DataConfig, run_dir, limit: int = 3) -> list[str]:
    """Copy held-out records into ``run_dir/examples`` (replaced whole); return their names."""
    run_dir = Path(run_dir)
    target, tmp = run_dir / EXAMPLES, run_dir / f".{EXAMPLES}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    copied = []
    try:
        for record in held_out_records(data, limit):
            try:
                files = record_files(record)
                missing = [f.name for f in files if not f.is_file()]
                if missing:
                    raise FileNotFoundError(f"missing {', '.join(missing)}")
                for f in files:
                    shutil.copyfile(f, tmp / f.name)
            except Exception as exc:  # noqa: BLE001 -- wfdb and the file system raise assorted errors; optional
                log.warning("example record %s not copied (%s: %s)", record, type(exc).__name__, exc)
                continue
            copied.append(record.name)
        if copied:
            shutil.rmtree(target, ignore_errors=True)
            os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return copied
