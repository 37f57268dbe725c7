"""Judges score a generated ECG report against the reference, GEM-style: is every statement
grounded in the reference findings? ``OfflineJudge`` (default) needs nothing; ``OpenAIJudge``
asks an OpenAI-compatible chat endpoint (urllib only) configured by environment variables:
``GEMFACTORY_JUDGE_URL`` (base URL, e.g. http://localhost:8000/v1), ``GEMFACTORY_JUDGE_MODEL``
and optionally ``GEMFACTORY_JUDGE_KEY``.
"""
from __future__ import annotations

import json
import os
import re
import urllib.error
import urllib.request
from typing import Protocol

from ..errors import GemError
from . import report_score as rs

JUDGE_PROMPT = """You are a cardiologist grading an ECG interpretation written by a model.
Compare the CANDIDATE with the REFERENCE, which is correct.
1. List the findings of the reference (rhythm, rate, conduction, axis, ST/T changes, hypertrophy, infarction).
2. For each finding, say whether the candidate states it (a missed finding is an omission).
3. For each claim of the candidate, say whether the reference supports it (an unsupported claim is a hallucination).
4. Give one grounding score from 0 to 10: 10 = every reference finding stated and every claim supported.
End with exactly one line: SCORE: <number>

REFERENCE:
{reference}

CANDIDATE:
{candidate}
"""


class Judge(Protocol):
    name: str

    def score(self, candidate: str, reference: str) -> dict:
        """A dict with at least ``score`` in [0, 1]."""


class OfflineJudge:
    """Keyword findings F1 and ROUGE-L; ``score`` is their mean."""
    name = "offline"

    def score(self, candidate: str, reference: str) -> dict:
        found = rs.prf([rs.findings(reference)], [rs.findings(candidate)])
        rouge = rs.rouge_l(candidate, reference)
        return {"score": (found["finding_f1"] + rouge) / 2, "finding_f1": found["finding_f1"], "rouge_l": rouge}


class OpenAIJudge:
    name = "openai"

    def __init__(self, url: str | None = None, model: str | None = None, key: str | None = None,
                 timeout: float = 60.0):
        self.url = (url or os.environ.get("GEMFACTORY_JUDGE_URL") or "").rstrip("/")
        self.model = model or os.environ.get("GEMFACTORY_JUDGE_MODEL")
        self.key = key or os.environ.get("GEMFACTORY_JUDGE_KEY")
        self.timeout = timeout
        if not self.url or not self.model:
            raise GemError("OpenAIJudge: set GEMFACTORY_JUDGE_URL (e.g. http://localhost:8000/v1) and "
                           "GEMFACTORY_JUDGE_MODEL")

    def score(self, candidate: str, reference: str) -> dict:
        body = {"model": self.model, "temperature": 0, "messages": [
            {"role": "user", "content": JUDGE_PROMPT.format(reference=reference, candidate=candidate)}]}
        headers = {"Content-Type": "application/json"}
        if self.key:
            headers["Authorization"] = f"Bearer {self.key}"
        request = urllib.request.Request(f"{self.url}/chat/completions", json.dumps(body).encode(), headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                text = json.loads(response.read())["choices"][0]["message"]["content"]
        except (urllib.error.URLError, OSError, ValueError, KeyError, IndexError) as exc:
            raise GemError(f"OpenAIJudge: {self.url}/chat/completions failed: {exc}") from None
        match = re.search(r"SCORE:\s*([0-9]+(?:\.[0-9]+)?)", text)
        if not match:
            raise GemError(f"OpenAIJudge: the reply has no 'SCORE: <number>' line: {text[-120:]!r}")
        return {"score": min(float(match.group(1)), 10.0) / 10, "explanation": text}


def get_judge(name: str = "offline") -> Judge:
    judges = {"offline": OfflineJudge, "openai": OpenAIJudge}
    if name not in judges:
        raise GemError(f"unknown judge {name!r} (judges: {', '.join(judges)})")
    return judges[name]()
