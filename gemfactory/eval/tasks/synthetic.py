"""The tiny synthetic task of ``gemfactory data synth``: rhythm class, grid colour, ECG facts."""
from __future__ import annotations

import re

from ...registry import EVAL_TASKS
from ..base import EvalTask

CLASSES = {
    "heart_rate": {"bradycardia": r"\bbradycardia\b", "normal": r"\bnormal\b",
                   "tachycardia": r"\btachycardia\b"},
    "grid_color": {c: rf"\b{c}\b" for c in ("red", "blue", "green")},
}


@EVAL_TASKS.register("synthetic")
class Synthetic(EvalTask):
    name = "synthetic"
    examples = (
        {"id": "rate", "ecg": "r0", "task": "heart_rate", "label": "bradycardia", "conversations": [
            {"from": "human", "value": "<ecg>\nClassify the heart rate of this ECG."},
            {"from": "gpt", "value": "Bradycardia: the heart rate is below 60 beats per minute."}]},
        {"id": "grid", "image": "r0.png", "task": "grid_color", "label": "blue", "conversations": [
            {"from": "human", "value": "<image>\nWhich colour are the grid lines of this ECG sheet?"},
            {"from": "gpt", "value": "The grid is blue."}]},
        {"id": "fact", "task": "text", "label": "25 mm/s", "conversations": [
            {"from": "human", "value": "What is the standard paper speed of an ECG?"},
            {"from": "gpt", "value": "The standard paper speed is 25 mm/s."}]},
    )

    def parse(self, item, prediction):
        text = prediction.lower()
        options = CLASSES.get(item.get("task"))
        if options is None:  # free-text facts: the reference must appear in the answer
            return item["label"] if item["label"].lower() in text else None
        hits = [name for name, pattern in options.items() if re.search(pattern, text)]
        return hits[0] if len(hits) == 1 else None
