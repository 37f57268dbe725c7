"""Uploaded files -> a WFDB record in a folder of its own -> the arrays the app plots and the model reads.

Plain functions without Gradio: the app shows their one-line errors, tests call them directly. A
record is ``NAME.hea`` plus the signal files its header names (``NAME.dat`` or ``NAME.mat``, PTB's
``NAME.xyz``...), given as separate files or as one ``.zip``. Other files of the same record
(``NAME.atr`` annotations) are accepted and not read; any other file is refused.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import wfdb

from ..data.ecg_io import read_ecg
from ..ecg.spec import STANDARD_LEADS, SignalSpec
from ..errors import DataError, ECGError

RECORD_SUFFIXES = (".hea", ".dat", ".mat")
EXPECTED = "a WFDB record: NAME.hea with its NAME.dat or NAME.mat, as separate files or one .zip"
SHEET_SECONDS = 10.0  # the 12-lead sheet shows the first 10 s
MB = 1024 * 1024


@dataclass
class UploadedRecord:
    name: str  # the record's name (its header's file name without .hea)
    path: Path  # record path without extension, alone in its temporary folder
    fs: float  # sampling rate of the record
    sheet_signal: np.ndarray  # (12, samples) standard leads in mV at ``fs``, for the 12-lead sheet
    model_signal: np.ndarray | None  # what the model's ECG encoder reads (its SignalSpec); None without one

    def summary(self) -> str:
        seconds = self.sheet_signal.shape[1] / self.fs
        return f"{self.name}: {len(STANDARD_LEADS)} leads, {self.fs:g} Hz, {seconds:.1f} s shown"

    def discard(self) -> None:
        shutil.rmtree(self.path.parent, ignore_errors=True)


def load_record(files, spec: SignalSpec | None, max_bytes: int, workdir=None) -> UploadedRecord:
    """Stage the uploaded ``files`` in a new folder under ``workdir`` and read the record they form.

    ``spec`` is the model's signal spec (None: a model without an ECG encoder). Every problem is a
    one-line DataError or ECGError naming the uploaded file and what was expected.
    """
    folder = Path(tempfile.mkdtemp(prefix="record-", dir=workdir))
    try:
        record = stage_uploads(files, folder, max_bytes)
        try:
            model_signal = read_ecg(record, spec) if spec is not None else None
            header = wfdb.rdheader(str(record))
            sheet_signal = read_ecg(record, _sheet_spec(float(header.fs), header.sig_len))
        except ECGError as exc:  # name the record as uploaded, not its temporary folder
            raise ECGError(str(exc).replace(f"{folder}{os.sep}", "")) from None
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return UploadedRecord(record.name, record, float(header.fs), sheet_signal, model_signal)


def _sheet_spec(fs: float, length: int | None) -> SignalSpec:
    """The 12 standard leads in mV at the record's own rate, at most :data:`SHEET_SECONDS` long."""
    shown = round(fs * SHEET_SECONDS)
    return SignalSpec(fs=fs, leads=STANDARD_LEADS, n_samples=min(length or shown, shown))


def stage_uploads(files, folder: Path, max_bytes: int) -> Path:
    """Copy the files (or unpack the one .zip) into ``folder``; return the record path ``folder/NAME``."""
    files = [Path(f) for f in files or []]
    if not files:
        raise DataError(f"no file uploaded; expected {EXPECTED}")
    for f in files:
        check_size(f.name, f.stat().st_size, max_bytes)
    zips = [f for f in files if f.suffix.lower() == ".zip"]
    if zips and len(files) > 1:
        others = ", ".join(f.name for f in files if f != zips[0])
        raise DataError(f"{zips[0].name} came with other files ({others}); expected one .zip alone, "
                        f"or the record's files without a .zip")
    if zips:
        names = unzip_flat(zips[0], folder, max_bytes)
    else:
        names = []
        for f in files:
            shutil.copyfile(f, folder / f.name)
            names.append(f.name)
    return find_record(folder, names)


def check_size(name: str, size: int, max_bytes: int) -> None:
    if size > max_bytes:
        raise DataError(f"{name} is {size / MB:.3g} MB, over the upload limit of {max_bytes / MB:.3g} MB "
                        f"(gemfactory app --max-upload-mb)")


def unzip_flat(archive: Path, folder: Path, max_bytes: int) -> list[str]:
    """Unpack the files of ``archive`` into ``folder`` without their sub-folders; return their names."""
    try:
        with zipfile.ZipFile(archive) as zf:
            members = [m for m in zf.infolist() if not m.is_dir() and not _is_hidden(m.filename)]
            check_size(f"{archive.name} unpacked", sum(m.file_size for m in members), max_bytes)
            names = []
            for m in members:
                name = PurePosixPath(m.filename).name
                if name in names:
                    raise DataError(f"{archive.name} holds two files named {name}; expected one record")
                with zf.open(m) as src, open(folder / name, "wb") as dst:
                    shutil.copyfileobj(src, dst)
                names.append(name)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError) as exc:
        raise DataError(f"{archive.name}: not a readable .zip archive ({exc}); expected {EXPECTED}") from None
    if not names:
        raise DataError(f"{archive.name} is empty; expected {EXPECTED}")
    return names


def _is_hidden(member: str) -> bool:  # macOS resource forks and dot files
    parts = PurePosixPath(member).parts
    return parts[0] == "__MACOSX" or parts[-1].startswith(".")


def find_record(folder: Path, names: list[str]) -> Path:
    """The one record among the staged ``names``: its header parses and names files all present."""
    headers = sorted(n for n in names if n.endswith(".hea"))
    stems = {n[:-4] for n in headers}
    for n in names:
        if not n.lower().endswith(RECORD_SUFFIXES) and Path(n).stem not in stems:
            raise DataError(f"{n}: not a WFDB record file; expected {EXPECTED}")
    if not headers:
        raise DataError(f"no .hea header among {', '.join(names)}; expected {EXPECTED}")
    if len(headers) > 1:
        raise DataError(f"several records uploaded ({', '.join(headers)}); expected one record at a time")
    header, stem = headers[0], headers[0][:-4]
    try:
        h = wfdb.rdheader(str(folder / stem))
    except Exception as exc:  # wfdb raises assorted errors for malformed headers
        raise DataError(f"{header}: not a valid WFDB header ({type(exc).__name__}: {exc}); "
                        f"expected a text header as written by wfdb") from None
    needed = sorted(set(h.file_name or []))
    if not needed:
        raise DataError(f"{header} lists no signals; expected an ECG record with leads")
    missing = [f for f in needed if f not in names]
    if missing:
        raise DataError(f"{header} needs {', '.join(missing)}, which {'was' if len(missing) == 1 else 'were'} "
                        f"not uploaded; upload the header together with its signal files (or all in one .zip)")
    for n in names:
        if n not in needed and Path(n).stem != stem:
            raise DataError(f"{n} is not part of record {stem} (its header names {', '.join(needed)}); "
                            f"expected one record at a time")
    return folder / stem


def example_records(folder) -> dict[str, list[Path]]:
    """Record name -> its files, for every ``*.hea`` in ``folder`` (the app's example records)."""
    folder = Path(folder)
    return {h.stem: sorted(p for p in folder.iterdir() if p.stem == h.stem and p.is_file())
            for h in sorted(folder.glob("*.hea"))}
