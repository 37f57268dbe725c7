"""``gemfactory eval CKPT --task heart_rate --data DIR`` on a folder of synthetic and real WFDB records."""
import json
import shutil

import numpy as np
import pytest

from gemfactory.cli import main
from gemfactory.data.ecg_io import write_ecg
from gemfactory.data.qrs import detect_record, rate_class
from gemfactory.data.synth import HR_ANSWERS, HR_QUESTIONS
from gemfactory.ecg.spec import STANDARD_LEADS
from gemfactory.eval.tasks.heart_rate import QUESTION, HeartRate, record_names
from gemfactory.testing import assert_conforms

REAL = {"s0010_re": (".hea", ".dat", ".xyz"), "JS00001": (".hea", ".mat"), "100": (".hea", ".dat", ".atr")}


@pytest.fixture(scope="module")
def checkpoint(two_step_run):
    return two_step_run


@pytest.fixture(scope="module")
def folder(tiny_data, shared_data, tmp_path_factory):
    """Three synthetic records (one per class, in a sub-folder), three real ones, a short and a flat one."""
    root = tmp_path_factory.mktemp("hr-folder")
    (root / "synthetic").mkdir()
    synthetic = {}
    for item in json.loads((tiny_data / "test.json").read_text()):
        if item.get("task") == "heart_rate" and item.get("ecg") and item["label"] not in synthetic.values():
            for ext in (".hea", ".dat"):
                shutil.copy(tiny_data / "ecg" / f"{item['ecg']}{ext}", root / "synthetic")
            synthetic[f"synthetic/{item['ecg']}"] = item["label"]
    assert sorted(synthetic.values()) == ["bradycardia", "normal", "tachycardia"]
    for name, suffixes in REAL.items():
        for ext in suffixes:
            shutil.copy(shared_data / f"{name}{ext}", root)
    t = np.arange(300) / 100
    write_ecg(root / "short", np.tile(np.sin(2 * np.pi * t), (12, 1)), 100, STANDARD_LEADS)
    write_ecg(root / "flat", np.zeros((12, 1000)), 100, STANDARD_LEADS)
    return root, synthetic


def test_task_passes_the_conformance_kit():
    assert [f.check for f in assert_conforms("eval_tasks", "heart_rate")] == [
        "build", "examples", "reference answers", "unrelated answer", "score"]


def test_question_and_answers_are_the_synthetic_data_s():
    assert QUESTION in HR_QUESTIONS
    task = HeartRate()
    for label, answer in HR_ANSWERS.items():
        assert task.parse({}, answer) == label


def test_eval_labels_by_detector_scores_answers_and_lists_unusable_records(checkpoint, folder, tmp_path, capsys):
    root, synthetic = folder
    assert main(["-q", "eval", str(checkpoint), "--task", "heart_rate", "--data", str(root),
                 "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    record = json.loads((tmp_path / f"{checkpoint.name}-heart_rate.json").read_text())
    samples = {s["id"]: s for s in record["samples"]}
    assert sorted(samples) == sorted(["s0010_re", "JS00001", *synthetic])
    for name, sample in samples.items():
        beats = detect_record(root / name)
        assert sample["details"]["detector"] == {"rate_bpm": pytest.approx(beats.rate_bpm), "lead": beats.lead,
                                                 "beats": len(beats.samples)}
        assert sample["reference"] == sample["details"]["label"] == rate_class(beats.rate_bpm)
        assert sample["prompt"] == "<ecg>\n" + QUESTION
        assert sample["correct"] == (sample["parsed"] == sample["reference"])
    for name, label in synthetic.items():  # the detector agrees with the generator's rate class
        assert samples[name]["reference"] == label
    assert samples["s0010_re"]["reference"] == "normal"
    assert samples["s0010_re"]["details"]["detector"]["rate_bpm"] == pytest.approx(82, abs=1)
    assert samples["JS00001"]["reference"] == "tachycardia"
    metrics = record["metrics"]
    assert metrics["n"] == len(samples)
    assert metrics["accuracy"] == pytest.approx(sum(s["correct"] for s in samples.values()) / len(samples))
    assert sum(m["n"] for m in metrics["by_label"].values()) == len(samples)
    unusable = {u["record"]: u["reason"] for u in metrics["unusable"]}
    assert sorted(unusable) == ["100", "flat", "short"]
    assert unusable["100"].startswith("the model cannot read it: ECG record ") and "missing leads" in unusable["100"]
    assert unusable["short"] == "3.0 s long; the detector needs at least 5 s"
    assert unusable["flat"].startswith("the detector cannot read it: ") and "flat-line" in unusable["flat"]
    assert "not scored: short: 3.0 s long" in printed and "not scored: 100: the model cannot read it" in printed
    assert record["data"]["path"] == str(root) and len(record["data"]["sha256"]) == 64


def test_segments_of_a_multi_segment_record_are_not_records_of_their_own(tmp_path):
    t = np.arange(1000) / 100
    for k in (1, 2):
        write_ecg(tmp_path / f"rec_{k}", np.tile(np.sin(2 * np.pi * t), (2, 1)), 100, ("I", "II"))
    (tmp_path / "rec.hea").write_text("rec/2 2 100 2000\nrec_1 1000\nrec_2 1000\n")
    assert record_names(tmp_path) == ["rec"]


@pytest.mark.parametrize("make, message", [
    (lambda p: (p / "items.json").write_text("[]") and p / "items.json",
     "the heart_rate task reads a folder of WFDB records (NAME.hea with its signal files), not a file"),
    (lambda p: p, "no .hea header in it; expected a folder of WFDB records"),
])
def test_bad_data_is_a_one_line_error(checkpoint, tmp_path, capsys, make, message):
    data = make(tmp_path)
    assert main(["-q", "eval", str(checkpoint), "--task", "heart_rate", "--data", str(data)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0] == f"error: --data {data}: {message}", err
