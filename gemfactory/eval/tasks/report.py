"""Report generation scored offline: finding-level precision/recall/F1 and ROUGE-L.

The parsed form of a report is its sorted set of findings (keyword list in
``gemfactory.eval.report_score``); a report is "correct" when its findings equal the reference's.
ROUGE-L compares the generated text with the reference answer text.
"""
from __future__ import annotations

from ...registry import EVAL_TASKS
from .. import report_score as rs
from ..base import EvalTask


def _joined(found: set[str]) -> str | None:
    return "; ".join(sorted(found)) if found else None


@EVAL_TASKS.register("report")
class Report(EvalTask):
    name = "report"
    max_new_tokens = 128
    examples = (
        {"id": "afib", "ecg": "r0", "conversations": [
            {"from": "human", "value": "<ecg>\nWrite the report of this ECG."},
            {"from": "gpt", "value": "Atrial fibrillation with rapid ventricular response. "
                                     "ST depression in V5-V6. No signs of infarction."}]},
        {"id": "norm", "ecg": "r1", "conversations": [
            {"from": "human", "value": "<ecg>\nDescribe this ECG."},
            {"from": "gpt", "value": "Sinus rhythm, normal ECG."}]},
    )

    def reference(self, item):
        convs = item.get("conversations", item.get("conversation"))
        last = convs[-1]
        return _joined(rs.findings(str(last.get("value", last.get("content", ""))))) or ""

    def parse(self, item, prediction):
        return _joined(rs.findings(prediction))

    def score(self, scored):
        out = super().score(scored)
        gold = [set(filter(None, s.reference.split("; "))) for s in scored]
        pred = [set(filter(None, (s.parsed or "").split("; "))) for s in scored]
        out.update(rs.prf(gold, pred))
        out["rouge_l"] = (sum(rs.rouge_l(s.prediction, s.answer or s.reference) for s in scored) / len(scored)
                          if scored else 0.0)
        return out
