"""Heart rate on any folder of WFDB records: the QRS detector labels, the model answers.

``gemfactory eval CKPT --task heart_rate --data DIR`` reads every ``*.hea`` under ``DIR`` (the
segments and layout header of a multi-segment record count as part of it, not as records). Each
record's label is the class of the detector's mean rate (:mod:`gemfactory.data.qrs`: lead II, or
the lead with the most energy; < 60 bpm bradycardia, > 100 bpm tachycardia, else normal). The model
is asked the synthetic data's heart-rate question and its answer is parsed like the synthetic
task's. Records the detector or the model cannot use are listed in ``metrics.unusable`` with the
reason, never dropped silently.
"""
from __future__ import annotations

from pathlib import Path

import wfdb

from ...data.ecg_io import read_ecg
from ...data.qrs import detect_record, rate_class
from ...data.synth import HR_ANSWERS
from ...errors import DataError, ECGError
from ...registry import EVAL_TASKS
from ..base import EvalTask
from .synthetic import Synthetic

QUESTION = "Classify the heart rate of this ECG."  # one of the synthetic data's HR_QUESTIONS
LABELS = tuple(HR_ANSWERS)


def _item(record_id: str, ecg: str, label: str, question: str, **detector) -> dict:
    return {"id": record_id, "ecg": ecg, "task": "heart_rate", "label": label, "detector": detector,
            "conversations": [{"from": "human", "value": "<ecg>\n" + question},
                              {"from": "gpt", "value": HR_ANSWERS[label]}]}


@EVAL_TASKS.register("heart_rate")
class HeartRate(EvalTask):
    name = "heart_rate"
    options = {"question": QUESTION}  # noqa: RUF012 -- read-only, as the base class's
    examples = tuple(_item(f"r{k}", f"r{k}", label, QUESTION, rate_bpm=bpm, lead="II", beats=beats)
                     for k, (label, bpm, beats) in enumerate((("bradycardia", 48.0, 8), ("normal", 75.0, 12),
                                                               ("tachycardia", 130.0, 21))))

    def __init__(self, **options):
        super().__init__(**options)
        if not str(self.opts["question"]).strip():
            raise DataError("eval task 'heart_rate': option question is empty; expected the question text")
        self.unusable: list[dict] = []

    def load(self, data, loaded=None) -> list[dict]:
        folder = Path(data)
        if not folder.is_dir():
            raise DataError(f"--data {data}: the heart_rate task reads a folder of WFDB records (NAME.hea "
                            f"with its signal files), not a file")
        spec = getattr(getattr(loaded, "processor", None), "signal_spec", None)
        if loaded is not None and spec is None:
            raise DataError(f"{getattr(loaded, 'path', 'the model')}: the heart_rate task needs a model with "
                            f"an ECG encoder")
        records = record_names(folder)
        if not records:
            raise DataError(f"--data {data}: no .hea header in it; expected a folder of WFDB records")
        items, self.unusable = [], []
        for name in records:
            item, reason = self._record_item(folder, name, spec)
            if reason:
                self.unusable.append({"record": name, "reason": reason})
            else:
                items.append(item)
        if not items:
            listed = "; ".join(f"{u['record']}: {u['reason']}" for u in self.unusable)
            raise DataError(f"--data {data}: no record the heart-rate detector and the model can use ({listed})")
        return items

    def _record_item(self, folder: Path, name: str, spec) -> tuple[dict | None, str | None]:
        path = str(folder / name)
        try:
            beats = detect_record(path)
        except ECGError as exc:
            return None, f"the detector cannot read it: {exc}"
        if beats.problem:
            return None, beats.problem
        if spec is not None:
            try:
                read_ecg(path, spec)
            except ECGError as exc:
                return None, f"the model cannot read it: {exc}"
        bpm = beats.rate_bpm
        return _item(name, path, rate_class(bpm), self.opts["question"], rate_bpm=bpm, lead=beats.lead,
                     beats=len(beats.samples)), None

    def details(self, item):
        return {"detector": dict(item.get("detector") or {}), "label": item["label"]}

    def check(self, item):
        if item.get("label") not in LABELS or not item.get("ecg"):
            raise DataError(f"heart_rate item {item.get('id', '?')}: expected an ecg record and a label in "
                            f"{list(LABELS)}, got label {item.get('label')!r}")

    def parse(self, item, prediction):
        return Synthetic().parse({"task": "heart_rate"}, prediction)

    def score(self, scored):
        metrics = super().score(scored)
        by_label = {}
        for label in LABELS:
            of_label = [s for s in scored if s.reference == label]
            if of_label:
                by_label[label] = {"n": len(of_label), "accuracy": sum(s.correct for s in of_label) / len(of_label)}
        return {**metrics, "by_label": by_label, "unusable": list(self.unusable)}


def record_names(folder: Path) -> list[str]:
    """Record names (relative paths without ``.hea``) of every header under ``folder``, except the
    segments and layout headers of multi-segment records."""
    headers = sorted(folder.rglob("*.hea"))
    parts: set[Path] = set()
    for hea in headers:
        try:
            header = wfdb.rdheader(str(hea.with_suffix("")))
        except Exception:  # noqa: BLE001, S112 -- wfdb raises assorted errors; read again (and listed) later
            continue
        for segment in getattr(header, "seg_name", None) or []:
            if segment and segment != "~":
                parts.add((hea.parent / f"{segment}.hea").resolve())
    return [hea.relative_to(folder).with_suffix("").as_posix() for hea in headers if hea.resolve() not in parts]
