"""csn/g12-style multiple choice: the answer is a letter (or an option's text).

Items give ``options`` (a list, lettered A, B, ... in order, or a dict letter -> text) and the
correct letter in ``label``. An answer naming no option, or more than one, is unparsable: it
counts as wrong and ``unparsed`` reports how many — never a random guess.
"""
from __future__ import annotations

import re
import string

from ...errors import DataError
from ...registry import EVAL_TASKS
from ..base import EvalTask

# "B", "B.", "(B)", "B) ...", "Answer: B", "the answer is (B)"; a bare capital followed by a word
# ("A normal ECG") is an article, not an answer
LEAD = r"(?:^|[Aa]nswer(?: is)?:?|[Oo]ption)\s*(?:\(([A-Z])\)|([A-Z])(?:[).:]|\s*$))"


def options_of(item: dict) -> dict[str, str]:
    opts = item.get("options", item.get("choices"))
    if isinstance(opts, dict):
        return {str(k).strip().upper(): str(v) for k, v in opts.items()}
    if isinstance(opts, list) and opts:
        return dict(zip(string.ascii_uppercase, map(str, opts)))
    raise DataError(f"eval item {item.get('id', '?')}: no 'options' (a list or a letter -> text mapping)")


@EVAL_TASKS.register("multiple_choice")
class MultipleChoice(EvalTask):
    name = "multiple_choice"
    max_new_tokens = 16
    examples = (
        {"id": "afib", "ecg": "r0", "label": "B", "options": ["Sinus rhythm", "Atrial fibrillation", "Atrial flutter"],
         "conversations": [{"from": "human", "value": "<ecg>\nWhat is the rhythm? A. Sinus rhythm "
                                                      "B. Atrial fibrillation C. Atrial flutter"},
                           {"from": "gpt", "value": "B. Atrial fibrillation"}]},
        {"id": "axis", "label": "A", "options": {"A": "Left axis deviation", "B": "Normal axis"},
         "conversations": [{"from": "human", "value": "Which axis? (A) Left axis deviation (B) Normal axis"},
                           {"from": "gpt", "value": "The answer is (A)."}]},
    )

    def check(self, item):
        opts = options_of(item)
        if str(item.get("label", "")).strip().upper() not in opts:
            raise DataError(f"eval item {item.get('id', '?')}: label {item.get('label')!r} is not one of the "
                            f"option letters {', '.join(opts)}")

    def reference(self, item):
        return str(item["label"]).strip().upper()

    def parse(self, item, prediction):
        opts = options_of(item)
        text = prediction.strip()
        if len(text.rstrip(".")) == 1:  # a lone letter, any case
            text = text.upper()
        letters = {a or b for a, b in re.findall(LEAD, text, flags=re.MULTILINE)} & set(opts)
        if len(letters) == 1:
            return letters.pop()
        if not letters:
            lowered = text.lower()
            named = [k for k, v in opts.items() if v.lower() in lowered]
            named = [k for k in named if not any(k != o and opts[k].lower() in opts[o].lower() for o in named)]
            if len(named) == 1:
                return named[0]
        return None
