"""POPE-style yes/no probing: accuracy, precision, recall, F1 (positive = "yes") and the yes-ratio.

An answer is "yes" or "no" by its first word (or the only one of the two it contains); anything
else is unparsable: wrong for accuracy, and a not-"yes" prediction for precision and recall.
"""
from __future__ import annotations

import re

from ...errors import DataError
from ...registry import EVAL_TASKS
from .. import metrics
from ..base import EvalTask


def yes_no(text: str) -> str | None:
    words = re.findall(r"[a-z]+", text.lower())
    if words and words[0] in ("yes", "no"):
        return words[0]
    found = {w for w in words if w in ("yes", "no")}
    return found.pop() if len(found) == 1 else None


@EVAL_TASKS.register("pope")
class Pope(EvalTask):
    name = "pope"
    max_new_tokens = 8
    examples = (
        {"id": "st", "ecg": "r0", "label": "yes", "conversations": [
            {"from": "human", "value": "<ecg>\nIs there ST elevation in this ECG?"},
            {"from": "gpt", "value": "Yes, in leads II, III and aVF."}]},
        {"id": "afib", "ecg": "r1", "label": "no", "conversations": [
            {"from": "human", "value": "<ecg>\nIs there atrial fibrillation?"}, {"from": "gpt", "value": "No."}]},
    )

    def check(self, item):
        if yes_no(str(item.get("label", ""))) is None:
            raise DataError(f"eval item {item.get('id', '?')}: label {item.get('label')!r} is not 'yes' or 'no'")

    def reference(self, item):
        return yes_no(str(item["label"]))

    def parse(self, item, prediction):
        return yes_no(prediction)

    def score(self, scored):
        out = super().score(scored)
        gold = [s.reference == "yes" for s in scored]
        pred = [s.parsed == "yes" for s in scored]
        out.update(metrics.binary(gold, pred) if scored else {"precision": 0.0, "recall": 0.0, "f1": 0.0})
        out["yes_ratio"] = sum(pred) / len(pred) if pred else 0.0
        return out
