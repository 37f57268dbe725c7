"""Eval tasks: on their ``examples``, the reference answer scores correct and an unrelated one does not."""
from __future__ import annotations

from ..eval.base import EvalTask, Scored
from ..registry import EVAL_TASKS
from ..template.base import normalize_conversation
from .kit import Failed, Findings
from .modules import positive_int, subclass_of

UNRELATED = "I cannot tell from this input."


def check(name: str, findings: Findings) -> None:
    task = findings.need("build", _build, name)
    items = findings.need("examples", _examples, task)
    findings.check("reference answers", _references, task, items)
    findings.check("unrelated answer", _unrelated, task, items)
    findings.check("score", _score, task, items)


def _build(name: str) -> tuple:
    task = subclass_of(EVAL_TASKS.get(name), EvalTask)()
    positive_int(task, "max_new_tokens")
    return task, f"{type(task).__name__}: up to {task.max_new_tokens} new tokens"


def _examples(task) -> tuple:
    items = list(task.examples)
    if not items:
        raise Failed("the task declares no `examples`: give a few items of its data so the kit can score them")
    for item in items:
        turns = normalize_conversation(item.get("conversations", item.get("conversation")), item.get("id", "?"))
        if turns[-1].role != "assistant":
            raise Failed(f"example {item.get('id', '?')}: the last turn must be the reference answer")
    return items, f"{len(items)} items"


def _answer(item: dict) -> str:
    return normalize_conversation(item.get("conversations", item.get("conversation")))[-1].text


def _scored(task, item: dict, prediction: str) -> Scored:
    parsed, ref = task.parse(item, prediction), task.reference(item)
    return Scored(str(item.get("id", "?")), "", prediction, ref, parsed, parsed == ref)


def _references(task, items) -> str:
    for item in items:
        s = _scored(task, item, _answer(item))
        if not s.correct:
            raise Failed(f"example {s.id}: the reference answer {s.prediction!r} parses to {s.parsed!r}, "
                         f"expected {s.reference!r}")
    return f"all {len(items)} reference answers score correct"


def _unrelated(task, items) -> str:
    for item in items:
        s = _scored(task, item, UNRELATED)
        if s.correct:
            raise Failed(f"example {s.id}: the answer {UNRELATED!r} scores correct (parsed as {s.parsed!r})")
    return f"{UNRELATED!r} scores wrong on all {len(items)}"


def _score(task, items) -> str:
    for answer, want in ((_answer, 1.0), (lambda item: UNRELATED, 0.0)):
        metrics = task.score([_scored(task, item, answer(item)) for item in items])
        missing = {"n", "accuracy", "unparsed"} - set(metrics)
        if missing:
            raise Failed(f"score() must return n, accuracy and unparsed; missing {sorted(missing)}")
        if metrics["n"] != len(items) or metrics["accuracy"] != want:
            raise Failed(f"score() of {len(items)} {'right' if want else 'wrong'} answers gave n {metrics['n']}, "
                         f"accuracy {metrics['accuracy']}; expected n {len(items)}, accuracy {want}")
    return "n, accuracy and unparsed; accuracy 1.0 when all answers are right, 0.0 when all are wrong"
