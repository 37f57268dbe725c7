"""Eval tasks score generated answers against references; each is a small registered class."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Scored:
    id: str
    prompt: str
    prediction: str
    reference: str
    parsed: str | None
    correct: bool


class EvalTask:
    name = "base"
    max_new_tokens = 32
    # a few items of the task's data; the conformance kit checks that their reference answers
    # score correct and that an unrelated answer does not (gemfactory.testing)
    examples: tuple[dict, ...] = ()

    def parse(self, item: dict, prediction: str) -> str | None:
        raise NotImplementedError

    def reference(self, item: dict) -> str:
        convs = item.get("conversations", item.get("conversation"))
        return str(item.get("label", convs[1].get("value", convs[1].get("content"))))

    def score(self, scored: list[Scored]) -> dict:
        n = len(scored)
        correct = sum(s.correct for s in scored)
        return {"n": n, "accuracy": correct / n if n else 0.0,
                "unparsed": sum(s.parsed is None for s in scored)}
