"""ECGBench-style multi-label classification from generated text (default: PTB-XL super-classes).

An item names its labels in ``labels`` (list, or ``label``: "MI, STTC") and may give its own
``label_set``; otherwise the task's ``labels`` option applies. A label counts as predicted when its
code (or, for the PTB-XL super-classes, its name) appears in the answer. Metrics: exact-set
accuracy, macro-F1 and Hamming loss (scikit-learn), and macro-AUC: from the per-label
probability of a "yes" next token when the yes/no probes ran (``probe=yes``, the default; one
forward pass per label and item), else from the binary predictions (``auc_source`` says which).
"""
from __future__ import annotations

import re

from ...errors import DataError
from ...registry import EVAL_TASKS
from ..base import EvalTask

PTBXL_SUPER = ("NORM", "MI", "STTC", "CD", "HYP")
NAMES = {"NORM": "normal ecg", "MI": "myocardial infarction", "STTC": "st/t change",
         "CD": "conduction disturbance", "HYP": "hypertrophy"}


def _split(value) -> list[str]:
    return [v.strip() for v in (value.split(",") if isinstance(value, str) else value) if str(v).strip()]


@EVAL_TASKS.register("multilabel")
class MultiLabel(EvalTask):
    name = "multilabel"
    max_new_tokens = 48
    options = {"labels": ",".join(PTBXL_SUPER), "probe": "yes"}
    examples = (
        {"id": "mi", "ecg": "r0", "labels": ["MI", "STTC"], "conversations": [
            {"from": "human", "value": "<ecg>\nWhich diagnostic classes (NORM, MI, STTC, CD, HYP) apply?"},
            {"from": "gpt", "value": "MI, STTC"}]},
        {"id": "norm", "ecg": "r1", "label": "NORM", "conversations": [
            {"from": "human", "value": "<ecg>\nWhich diagnostic classes apply?"},
            {"from": "gpt", "value": "A normal ECG (NORM)."}]},
    )

    def label_set(self, item: dict) -> list[str]:
        return _split(item.get("label_set") or self.opts["labels"])

    def gold(self, item: dict) -> list[str]:
        value = item.get("labels", item.get("label"))
        if value is None:
            raise DataError(f"eval item {item.get('id', '?')}: no 'labels' field (the reference label list)")
        return _split(value)

    def check(self, item):
        outside = [lab for lab in self.gold(item) if lab not in self.label_set(item)]
        if outside:
            raise DataError(f"eval item {item.get('id', '?')}: label {outside[0]!r} is not in the task's "
                            f"label set ({', '.join(self.label_set(item))})")

    def reference(self, item):
        return ",".join(sorted(set(self.gold(item))))

    def parse(self, item, prediction):
        text = prediction.lower()
        hits = [lab for lab in self.label_set(item)
                if re.search(rf"(?<![a-z0-9]){re.escape(lab.lower())}(?![a-z0-9])", text)
                or (lab in NAMES and NAMES[lab] in text)]
        return ",".join(sorted(hits)) if hits else None

    def probes(self, item):
        if self.opts["probe"] not in ("yes", "1", "true", True):
            return {}
        return {lab: f"Does this ECG show {NAMES.get(lab, lab)} ({lab})? Answer yes or no."
                for lab in self.label_set(item)}

    def score(self, scored):
        from .. import metrics

        out = super().score(scored)
        labels = sorted({lab for s in scored for lab in _split(s.reference)} |
                        {lab for s in scored for lab in s.scores} |
                        {lab for s in scored for lab in _split(s.parsed or "")})
        out.update(metrics.multilabel(
            [_split(s.reference) for s in scored], [_split(s.parsed or "") for s in scored], labels,
            [s.scores for s in scored] if scored and all(s.scores for s in scored) else None))
        return out
