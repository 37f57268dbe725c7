"""Eval tasks score generated answers against references; each is a small registered class."""
from __future__ import annotations

from dataclasses import dataclass, field

from ..data.dataset import load_items
from ..errors import GemError


@dataclass
class Scored:
    id: str
    prompt: str
    prediction: str
    reference: str
    parsed: str | None
    correct: bool
    answer: str = ""  # the reference answer text of the conversation (free-text scores such as ROUGE-L)
    scores: dict = field(default_factory=dict)  # per-label yes-probabilities, when the task probes them
    details: dict = field(default_factory=dict)  # what the task knows of the item (heart_rate: detector rate)


class EvalTask:
    name = "base"
    max_new_tokens = 32
    # a few items of the task's data; the conformance kit checks that their reference answers
    # score correct and that an unrelated answer does not (gemfactory.testing)
    examples: tuple[dict, ...] = ()
    options: dict = {}  # name -> default of the task's options (``--task-option NAME=VALUE``)

    def __init__(self, **options):
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            known = ", ".join(self.options) or "none"
            raise GemError(f"eval task {self.name!r}: unknown option {unknown[0]!r} (options: {known})")
        self.opts = {**self.options, **options}

    def load(self, data, loaded=None) -> list[dict]:
        """The items of ``--data`` (a JSON list of items; a task may read other layouts, e.g. a folder)."""
        return load_items(data)

    def details(self, item: dict) -> dict:
        """Facts about ``item`` kept beside its answer in the record (none by default)."""
        return {}

    def check(self, item: dict) -> None:
        """Raise a DataError naming the item when it cannot be scored (called on every item first)."""

    def probes(self, item: dict) -> dict[str, str]:
        """label -> yes/no question whose "yes" probability is recorded in ``Scored.scores`` (none by default)."""
        return {}

    def parse(self, item: dict, prediction: str) -> str | None:
        raise NotImplementedError

    def reference(self, item: dict) -> str:
        if "label" in item:
            return str(item["label"])
        convs = item.get("conversations", item.get("conversation"))
        return str(convs[1].get("value", convs[1].get("content")))

    def score(self, scored: list[Scored]) -> dict:
        n = len(scored)
        correct = sum(s.correct for s in scored)
        return {"n": n, "accuracy": correct / n if n else 0.0,
                "unparsed": sum(s.parsed is None for s in scored)}
