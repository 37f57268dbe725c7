"""Run an eval task over a JSON file with batched greedy generation."""
from __future__ import annotations

from pathlib import Path

from ..data.context import apply_context
from ..errors import DataError
from ..infer.generate import GenerationSettings, Prompt, generate
from ..registry import EVAL_TASKS
from ..template.base import normalize_conversation
from .base import Scored


def evaluate(loaded, task_name: str, data: str, image_folder: str | None = None,
             ecg_folder: str | None = None, limit: int | None = None, batch_size: int = 8,
             progress=None, seed: int = 0, options: dict | None = None) -> dict:
    import torch

    task = EVAL_TASKS.get(task_name)(**(options or {}))
    items = task.load(data, loaded)
    items = items[:limit] if limit else items
    for item in items:  # a malformed item fails before any generation
        task.check(item)
    torch.manual_seed(seed)
    base = Path(data).parent
    image_folder = Path(image_folder) if image_folder else base / "images"
    ecg_folder = Path(ecg_folder) if ecg_folder else base / "ecg"
    settings = GenerationSettings(max_new_tokens=task.max_new_tokens)
    scored: list[Scored] = []
    by_kind: dict[str, list[Scored]] = {}
    for start in range(0, len(items), batch_size):
        chunk = items[start:start + batch_size]
        prompts = [_prompt(item, image_folder, ecg_folder) for item in chunk]
        outputs = generate(loaded, prompts, settings)
        for item, prompt, text in zip(chunk, prompts, outputs):
            parsed = task.parse(item, text)
            ref = task.reference(item)
            s = Scored(str(item.get("id")), prompt.turns[-1].text, text, ref, parsed, parsed == ref,
                       answer=_answer(item), scores=_probe(loaded, task, item, prompt), details=task.details(item))
            scored.append(s)
            by_kind.setdefault(item.get("task", task_name), []).append(s)
        if progress:
            progress(len(scored), len(items))
    metrics = task.score(scored)
    if len(by_kind) > 1:
        metrics["by_kind"] = {k: task.score(v) for k, v in sorted(by_kind.items())}
    return {"task": task_name, "data": str(data), "metrics": metrics,
            "samples": [s.__dict__ for s in scored]}


def _answer(item: dict) -> str:
    turns = normalize_conversation(item.get("conversations", item.get("conversation")), item.get("id", "?"))
    return turns[-1].text


def _probe(loaded, task, item: dict, prompt: Prompt) -> dict:
    questions = task.probes(item)
    if not questions:
        return {}
    from .probe import yes_probability

    return {label: yes_probability(loaded, Prompt.ask(q, ecg=prompt.ecg, image=prompt.image))
            for label, q in sorted(questions.items())}


def _prompt(item: dict, image_folder: Path, ecg_folder: Path) -> Prompt:
    item_id = item.get("id", "?")
    turns = normalize_conversation(item.get("conversations", item.get("conversation")), item_id)
    turns = apply_context(turns, item.get("context"), item_id)  # same prompt as in training
    if len(turns) < 2 or turns[-1].role != "assistant":
        raise DataError(f"sample {item_id}: expected a question and a reference answer")
    image = image_folder / item["image"] if item.get("image") else None
    ecg = ecg_folder / item["ecg"] if item.get("ecg") else None
    return Prompt(turns[:-1], image=image, ecg=ecg)
