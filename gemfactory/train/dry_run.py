"""``gemfactory train RECIPE --dry-run``: what a run would cost, without running it.

Builds the model, then per stage prints parameters per component (trainable / frozen), sequence
lengths of the data after templating (and how many samples exceed max_length), the memory per
device (``gemfactory.train.memory``: weights, gradients, optimizer states, activations and logits)
and a time estimate from a few timed optimizer steps.
"""
from __future__ import annotations

import math
import statistics
import time
from pathlib import Path

import torch

from ..config import Recipe
from ..data.dataset import Collator, GemDataset
from ..data.processor import Processor
from ..errors import DataError
from ..hub import is_hub_ref
from ..model.builder import build_model, recipe_template
from ..data.recipe_tokenizer import tokenizer_for_recipe
from ..registry import TEMPLATES
from ..model.sources import model_paths, weights_missing
from .memory import estimate_stage, meta_model
from .trainer import deepspeed_config, zero_stage
from .tuning import apply_tuning, check_tuning, finish_stage, parameter_counts

TIMED_STEPS = 3
CHARS_PER_TOKEN = 4  # a rough mean of BPE tokenizers on English text, for estimates without a tokenizer


def dry_run(recipe: Recipe, devices: int = 1, out=print) -> None:
    check_tuning(recipe)
    template = recipe_template(recipe)
    tokenizer = tokenizer_for_recipe(recipe, template, planning=True)
    absent = unavailable_weights(recipe)
    if absent or getattr(tokenizer, "vocab_only", False):
        # planning only: shapes from the configs, nothing read or allocated
        model = meta_model(recipe, tokenizer)
        out(f"weights not here ({', '.join(absent) or 'tokenizer only'}): parameters and memory from the "
            f"configs on the meta device; no timed steps (gemfactory download {recipe.source} fetches the hub ones)")
    else:
        model = build_model(recipe.model, tokenizer, origin=recipe.source)
    zero = zero_stage(deepspeed_config(recipe.training.deepspeed))
    for stage in recipe.stages:
        tunes = apply_tuning(model, stage)
        counts = parameter_counts(model)
        out(f"== stage {stage.name}")
        for comp, (trainable, total) in counts.items():
            out(f"  {comp:<10} {tunes[comp]:<8} {trainable:>14,} trainable {total - trainable:>14,} frozen")
        dataset = stage_data(recipe, stage, model, tokenizer, template, out)
        est = estimate_stage(model, recipe, stage, devices, zero)
        out(f"  memory     per device over {devices} device(s), "
            f"{'ZeRO-%s' % zero if zero is not None else 'no ZeRO'}: {est.describe()} (gemfactory memory explains)")
        if dataset is not None and not absent:
            seconds = time_steps(model, dataset, tokenizer, stage.batch_size, stage.lr)
            steps = stage.max_steps if stage.max_steps > 0 else math.ceil(
                stage.epochs * len(dataset) / (stage.batch_size * stage.gradient_accumulation_steps * devices))
            per_step = seconds * stage.gradient_accumulation_steps
            out(f"  time       {per_step:.2f} s/step here x {steps} steps ~ {per_step * steps / 60:.1f} min")
        finish_stage(model, tunes)


def unavailable_weights(recipe: Recipe) -> list[str]:
    """Recipe keys whose weights are neither on disk nor in the hub cache."""
    local = [k for k, v in model_paths(recipe.model).items()
             if k != "model.llm.tokenizer" and not is_hub_ref(v) and not Path(v).expanduser().exists()]
    return local + weights_missing(recipe.model)


def stage_data(recipe: Recipe, stage, model, tokenizer, template, out) -> GemDataset | None:
    """The stage's dataset after printing its token lengths; None (with a note) when the data
    file is absent or the tokenizer is a vocabulary-only stand-in."""
    train = stage.train or recipe.data.train
    if not train or not Path(train).is_file():
        out(f"  data       {train or 'data.train'} not found: sequence lengths and timing skipped")
        return None
    max_len = stage.max_length or recipe.data.max_length
    if getattr(tokenizer, "vocab_only", False):
        lengths = estimated_lengths(train, model)
        over = sum(n > max_len for n in lengths)
        out(f"  data       {len(lengths)} samples; tokens ESTIMATED without a tokenizer ({tokenizer.source} not "
            f"cached): {CHARS_PER_TOKEN} characters per token plus the image/ECG tokens, template text not "
            f"counted: median {statistics.median(lengths) if lengths else 0:.0f} max {max(lengths, default=0)}; "
            f"{over} over max_length {max_len} (gemfactory download {recipe.source} --config-only for exact counts)")
        return None
    stage_template = TEMPLATES.get(stage.template)() if stage.template else template
    processor = Processor.from_model(model, tokenizer, stage_template, max_len)
    dataset = GemDataset(train, processor, stage.image_folder or recipe.data.image_folder,
                         stage.ecg_folder or recipe.data.ecg_folder)
    lengths, too_long, bad = sequence_lengths(dataset, processor, max_len)
    if lengths:
        q = statistics.quantiles(lengths, n=20) if len(lengths) > 1 else [lengths[0]] * 19
        out(f"  data       {len(dataset)} samples; tokens min {min(lengths)} median "
            f"{statistics.median(lengths):.0f} p95 {q[18]:.0f} max {max(lengths)}; "
            f"{too_long} over max_length {max_len}; {bad} unusable")
    return dataset


def estimated_lengths(train: str, model) -> list[int]:
    """Token counts guessed from the characters of each sample's turns (no tokenizer at hand)."""
    from ..data.dataset import load_items

    image = model.vision_tower.num_tokens if model.vision_tower is not None else 0
    ecg = model.ecg_encoder.num_tokens if model.ecg_encoder is not None else 0
    lengths = []
    for item in load_items(train):
        turns = item.get("conversations", item.get("conversation")) or []
        chars = sum(len(t.get("value", "")) for t in turns if isinstance(t, dict) and isinstance(t.get("value"), str))
        lengths.append(math.ceil(chars / CHARS_PER_TOKEN) + image * bool(item.get("image")) + ecg * bool(item.get("ecg")))
    return lengths


def sequence_lengths(dataset: GemDataset, processor: Processor, max_len: int):
    """Token counts after templating and placeholder expansion, reading no ECG or image files
    (any-resolution images are counted at the tower's base size)."""
    from ..template.base import normalize_conversation

    lengths, too_long, bad = [], 0, 0
    processor = Processor(**{**processor.__dict__, "max_length": 10**9})
    for item in dataset.items:
        try:
            turns = normalize_conversation(item.get("conversations", item.get("conversation")), item.get("id"))
            n = len(processor.encode(turns, has_image=bool(item.get("image")), has_ecg=bool(item.get("ecg")),
                                     item_id=item.get("id"))["input_ids"])
        except DataError:
            bad += 1
            continue
        lengths.append(n)
        too_long += n > max_len
    return lengths, too_long, bad


def time_steps(model, dataset: GemDataset, tokenizer, batch_size: int, lr: float) -> float:
    collate = Collator(tokenizer.pad_token_id)
    feats = [f for f in (dataset[i] for i in range(min(len(dataset), batch_size * 2))) if "skip" not in f]
    if not feats:
        return float("nan")
    batch = collate(feats[:batch_size])
    params = [p for p in model.parameters() if p.requires_grad]
    saved = [p.detach().clone() for p in params]
    opt = torch.optim.AdamW(params, lr=lr)
    model.train()
    times = []
    for _ in range(TIMED_STEPS + 1):  # the first step warms up
        start = time.perf_counter()
        model(**batch).loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - start)
    with torch.no_grad():  # leave the model as it was
        for p, s in zip(params, saved):
            p.copy_(s)
    return statistics.median(times[1:])
