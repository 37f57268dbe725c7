"""Short-answer VQA: normalised exact match (lower case, no punctuation, articles or extra spaces).

The reference is ``label`` (or ``answers``: any of them counts), else the conversation's answer.
"""
from __future__ import annotations

import re

from ...registry import EVAL_TASKS
from ..base import EvalTask


def normalize(text: str) -> str:
    text = re.sub(r"[^\w\s/.-]|(?<!\d)[.-]|[.-](?!\d)", " ", str(text).lower())  # keep 0.12, 25/10
    return " ".join(w for w in text.split() if w not in ("a", "an", "the"))


@EVAL_TASKS.register("vqa")
class VQA(EvalTask):
    name = "vqa"
    max_new_tokens = 16
    examples = (
        {"id": "rate", "ecg": "r0", "label": "72 bpm", "conversations": [
            {"from": "human", "value": "<ecg>\nWhat is the heart rate?"}, {"from": "gpt", "value": "72 bpm."}]},
        {"id": "lead", "image": "r0.png", "answers": ["V1", "lead V1"], "conversations": [
            {"from": "human", "value": "<image>\nIn which lead is the delta wave clearest?"},
            {"from": "gpt", "value": "Lead V1"}]},
    )

    def _answers(self, item: dict) -> list[str]:
        answers = item.get("answers") or [super().reference(item)]
        return [normalize(a) for a in answers]

    def reference(self, item):
        return self._answers(item)[0]

    def parse(self, item, prediction):
        pred = normalize(prediction)
        if not pred:
            return None
        return self._answers(item)[0] if pred in self._answers(item) else pred
