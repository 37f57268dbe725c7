"""The real 12-lead records of tests/data/real12 (PhysioNet/CinC Challenge 2021: Georgia ``E``,
Chapman-Ningbo ``JS``, PTB-XL ``HR``; 500 Hz, 10 s) with slow, normal and fast rates.

1. gemfactory's reader gives wfdb's own physical samples for every record, on both of its paths;
2. the QRS detector's rate class on lead II agrees with the diagnosis the header states as
   SNOMED CT codes on its ``Dx:`` comment line (as wfdb parses the comments): sinus bradycardia,
   sinus tachycardia or sinus rhythm. These records are the default real set (c) of
   scripts/validate_heart_rate.py.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import wfdb

from gemfactory.data.ecg_io import read_ecg
from gemfactory.data.qrs import detect_record, rate_class
from gemfactory.data.wfdb_read import read_signals, record_info
from gemfactory.ecg.spec import STANDARD_LEADS, SignalSpec

REAL12 = Path(__file__).resolve().parent / "data" / "real12"
RECORDS = sorted(p.stem for p in REAL12.glob("*.hea"))
# SNOMED CT codes of the Challenge's rate diagnoses -> the heart-rate question's classes
SINUS_BRADYCARDIA, SINUS_TACHYCARDIA, SINUS_RHYTHM = "426177001", "427084000", "426783006"


def header_dx(record: str) -> list[str]:
    """The SNOMED CT codes of the header's ``Dx:`` comment, as wfdb reads the comments."""
    comments = wfdb.rdheader(str(REAL12 / record)).comments
    lines = [c.split(":", 1)[1] for c in comments if c.strip().startswith("Dx:")]
    assert len(lines) == 1, f"{record}: expected one Dx line in {comments}"
    return [code.strip() for code in lines[0].split(",")]


def dx_rate_class(codes: list[str]) -> str:
    rate = {SINUS_BRADYCARDIA, SINUS_TACHYCARDIA} & set(codes)
    assert len(rate) < 2 and (rate or SINUS_RHYTHM in codes), f"no single rate diagnosis in {codes}"
    return ("bradycardia" if SINUS_BRADYCARDIA in rate else "tachycardia" if rate else "normal")


def test_the_set_has_slow_normal_and_fast_records():
    classes = [dx_rate_class(header_dx(r)) for r in RECORDS]
    assert {c: classes.count(c) for c in set(classes)} == {"bradycardia": 4, "normal": 4, "tachycardia": 4}


@pytest.mark.parametrize("record", RECORDS)
def test_gemfactory_reads_what_wfdb_reads(record):
    path = str(REAL12 / record)
    ref = wfdb.rdrecord(path, physical=True)
    assert (ref.fs, ref.sig_len, ref.n_sig) == (500, 5000, 12)
    for fast in (True, False):
        info = record_info(path, fast=fast)
        assert np.array_equal(read_signals(info), ref.p_signal.T), f"fast={fast}"
    # at the record's own rate and length read_ecg only reorders the leads and casts to float32
    # (all units here are mV, whatever their case)
    assert all(u.lower() == "mv" for u in ref.units)
    x = read_ecg(path, SignalSpec(fs=500, leads=STANDARD_LEADS, n_samples=5000))
    order = [ref.sig_name.index(lead) for lead in STANDARD_LEADS]
    assert np.array_equal(x, ref.p_signal.T[order].astype(np.float32))


@pytest.mark.parametrize("record", RECORDS)
def test_detector_rate_class_agrees_with_the_header_diagnosis(record):
    beats = detect_record(REAL12 / record)
    assert beats.lead_choice == "lead II" and beats.rate_bpm is not None, beats.problem
    assert rate_class(beats.rate_bpm) == dx_rate_class(header_dx(record)), f"{beats.rate_bpm:.1f} bpm"
