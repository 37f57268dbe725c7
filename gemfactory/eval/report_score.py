"""Offline report scoring: ECG findings by keyword (with simple negation) and ROUGE-L by LCS."""
from __future__ import annotations

import re

# canonical finding -> pattern; matched on lower-cased text
FINDINGS = {
    "sinus rhythm": r"sinus rhythm",
    "atrial fibrillation": r"atrial fibrillation|\bafib\b|\ba-?fib\b",
    "atrial flutter": r"atrial flutter",
    "bradycardia": r"bradycardi",
    "tachycardia": r"tachycardi",
    "av block": r"\bav block|atrioventricular block|first[- ]degree block|\b1st degree",
    "left bundle branch block": r"left bundle branch block|\blbbb\b",
    "right bundle branch block": r"right bundle branch block|\brbbb\b",
    "myocardial infarction": r"infarct|\bstemi\b",
    "st elevation": r"st[- ]segment elevation|st elevation",
    "st depression": r"st[- ]segment depression|st depression",
    "t wave inversion": r"t[- ]wave inversion|inverted t[- ]wave",
    "left ventricular hypertrophy": r"left ventricular hypertrophy|\blvh\b",
    "right ventricular hypertrophy": r"right ventricular hypertrophy|\brvh\b",
    "left axis deviation": r"left axis deviation",
    "right axis deviation": r"right axis deviation",
    "premature ventricular contraction": r"premature ventricular|ventricular premature|\bpvcs?\b|ventricular ectop",
    "premature atrial contraction": r"premature atrial|atrial premature|\bpacs?\b",
    "prolonged qt": r"(?:prolonged|long) qtc?\b|qtc? prolongation",
    "low voltage": r"low (?:qrs )?voltage",
    "paced rhythm": r"\bpaced\b|pacemaker",
    "normal ecg": r"normal ecg|within normal limits",
}
NEGATION = re.compile(r"\b(?:no|not|without|absence of|negative for)\b[^.;,]*$")


def findings(text: str) -> set[str]:
    """Findings named in ``text``; one preceded by a negation in the same clause does not count."""
    text = text.lower()
    found = set()
    for name, pattern in FINDINGS.items():
        for m in re.finditer(pattern, text):
            if not NEGATION.search(text[:m.start()][-40:]):
                found.add(name)
                break
    return found


def prf(gold: list[set], pred: list[set]) -> dict:
    """Micro precision / recall / F1 over all findings of all samples."""
    tp = sum(len(g & p) for g, p in zip(gold, pred))
    fp = sum(len(p - g) for g, p in zip(gold, pred))
    fn = sum(len(g - p) for g, p in zip(gold, pred))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"finding_precision": precision, "finding_recall": recall, "finding_f1": f1}


def tokens(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def lcs(a: list[str], b: list[str]) -> int:
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def rouge_l(prediction: str, reference: str, beta: float = 1.2) -> float:
    """ROUGE-L F-measure (Lin 2004) on lower-cased word tokens; beta weights recall as in the original."""
    p, r = tokens(prediction), tokens(reference)
    if not p or not r:
        return 0.0
    n = lcs(p, r)
    if n == 0:
        return 0.0
    prec, rec = n / len(p), n / len(r)
    return (1 + beta ** 2) * prec * rec / (rec + beta ** 2 * prec)
