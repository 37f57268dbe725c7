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
             progress=None, seed: int = 0, options: dict | None = None, context: dict | None = None) -> dict:
    """``context`` (caption/OCR, e.g. from ``--caption``) is used for the items without their own."""
    import torch  # heavy imports when evaluating, not when the CLI starts

    from ..train.distributed import all_gather, shard

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
    batches = [items[start:start + batch_size] for start in range(0, len(items), batch_size)]
    # under a launcher (torchrun ... gemfactory eval) rank r generates batches r, r+W, ...: each batch
    # is the one a single process would run, so the outputs (and the record) are the same
    rank, world = shard()
    mine: dict[int, list[Scored]] = {}
    for b in range(rank, len(batches), world):
        mine[b] = [_scored(loaded, task, item, prompt, text) for item, prompt, text in
                   _generated(loaded, batches[b], image_folder, ecg_folder, settings, context)]
        if progress:
            progress(sum(map(len, mine.values())), sum(map(len, batches[rank::world])))
    done = {b: part for shard_parts in all_gather(mine) for b, part in shard_parts.items()}
    scored: list[Scored] = [s for b in range(len(batches)) for s in done[b]]
    by_kind: dict[str, list[Scored]] = {}
    for item, s in zip(items, scored):
        by_kind.setdefault(item.get("task", task_name), []).append(s)
    metrics = task.score(scored)
    if len(by_kind) > 1:
        metrics["by_kind"] = {k: task.score(v) for k, v in sorted(by_kind.items())}
    return {"task": task_name, "data": str(data), "metrics": metrics,
            "samples": [s.__dict__ for s in scored]}


def _generated(loaded, chunk: list[dict], image_folder: Path, ecg_folder: Path, settings, context=None):
    prompts = [_prompt(item, image_folder, ecg_folder, context) for item in chunk]
    return zip(chunk, prompts, generate(loaded, prompts, settings))


def _scored(loaded, task, item: dict, prompt: Prompt, text: str) -> Scored:
    parsed = task.parse(item, text)
    ref = task.reference(item)
    return Scored(str(item.get("id")), prompt.turns[-1].text, text, ref, parsed, parsed == ref,
                  answer=_answer(item), scores=_probe(loaded, task, item, prompt), details=task.details(item))


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


def _prompt(item: dict, image_folder: Path, ecg_folder: Path, context: dict | None = None) -> Prompt:
    item_id = item.get("id", "?")
    turns = normalize_conversation(item.get("conversations", item.get("conversation")), item_id)
    turns = apply_context(turns, item.get("context", context), item_id)  # same prompt as in training
    if len(turns) < 2 or turns[-1].role != "assistant":
        raise DataError(f"sample {item_id}: expected a question and a reference answer")
    image = image_folder / item["image"] if item.get("image") else None
    ecg = ecg_folder / item["ecg"] if item.get("ecg") else None
    return Prompt(turns[:-1], image=image, ecg=ecg)
