"""``gemfactory recipe check --tiny``: build a recipe's tiny twin (:mod:`.twin`), run one optimiser
step per stage on a collated batch of synthetic samples and return one summary line per component
and per stage; a recipe whose architecture cannot be built or trained fails naming its key."""
from __future__ import annotations

from pathlib import Path

import torch

from ..config import Recipe
from ..data.dataset import Collator, load_items
from ..data.processor import Processor
from ..errors import ConfigError, DataError
from ..model.builder import build_model, recipe_template
from ..data.recipe_tokenizer import tokenizer_for_recipe
from ..registry import TEMPLATES
from ..vision.depth import layer_indices
from .trainer import deepspeed_config
from .tuning import apply_tuning, component_of, parameter_counts
from .twin import TINY_BATCH, shrink


def tiny_check(recipe: Recipe, data_dir: str | Path) -> list[str]:
    """Build the tiny twin, run one optimiser step per stage; summary lines (the last is ``ok``).

    Raises a GemError naming the recipe key when the architecture cannot be built or trained.
    """
    deepspeed_config(recipe.training.deepspeed)  # a bad name fails here, not on the GPU cluster
    tiny = shrink(recipe, data_dir)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tensors this small only lose time to thread hand-offs on a busy CPU
    try:
        return _run_twin(tiny)
    finally:
        torch.set_num_threads(threads)


def _run_twin(tiny: Recipe) -> list[str]:
    template = recipe_template(tiny)
    tokenizer = tokenizer_for_recipe(tiny, template)  # the twin has no paths: a BPE trained on its data
    torch.manual_seed(tiny.training.seed)
    model = build_model(tiny.model, tokenizer)
    if tiny.training.gradient_checkpointing:  # as the trainer turns it on
        enable = getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable
        enable()

    batches: dict[str, tuple] = {}  # template name -> (features, kinds, collated batch)
    counts = parameter_counts(model)
    lines = _component_lines(tiny, model, tokenizer, template.name, counts)
    for stage in tiny.stages:
        # a stage may render its samples with its own template (LLaVA pretrains with `plain`)
        stage_template = TEMPLATES.get(getattr(stage, "template", None) or template.name)()
        if stage_template.name not in batches:
            processor = Processor.from_model(model, tokenizer, stage_template, tiny.data.max_length)
            feats, kinds = _pick_batch(processor, tiny)
            batches[stage_template.name] = feats, kinds, Collator(tokenizer.pad_token_id)(feats)
        feats, kinds, batch = batches[stage_template.name]
        tunes = apply_tuning(model, stage)
        groups: dict[tuple, list] = {}
        for name, p in model.named_parameters():
            if p.requires_grad:
                lr = stage.lr_per_component.get(component_of(name), stage.lr)
                groups.setdefault((lr, stage.weight_decay), []).append(p)
        optimizer = torch.optim.AdamW(
            [{"params": ps, "lr": lr, "weight_decay": wd} for (lr, wd), ps in groups.items()])
        model.train()
        loss = model(**batch).loss
        if not torch.isfinite(loss):
            raise ConfigError(f"stages.{stage.name}: the tiny twin's loss is {loss.item()} on its first batch")
        loss.backward()
        _check_gradients(model, stage.name, tunes)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        lines.append(
            f"stage {stage.name}: tune {', '.join(f'{k} {v}' for k, v in tunes.items())}"
            f"{'' if stage_template.name == template.name else ', template ' + stage_template.name}; one step on "
            f"{len(feats)} samples ({', '.join(kinds)}): loss {loss.item():.3f}, {trainable:,} trainable parameters"
        )
    lines.append("ok")
    return lines


def _check_gradients(model, stage: str, tunes: dict[str, str]) -> None:
    """Every component the stage trains got a finite gradient from the twin's first batch."""
    for comp, tune in tunes.items():
        module = {"llm": model.language_model, "vision": model.vision_tower,
                  "ecg": model.ecg_encoder, "connectors": model.connectors}[comp]
        trained = [p for p in module.parameters() if p.requires_grad]
        if trained and not any(p.grad is not None and torch.isfinite(p.grad).all() for p in trained):
            raise ConfigError(f"stages.{stage}.tune.{comp}: {tune}, but no gradient reaches the {comp} "
                              f"in the tiny twin (is it used by the samples?)")  # (identity: no parameters)


def _pick_batch(processor, recipe: Recipe) -> tuple[list[dict], list[str]]:
    """One usable sample of each kind (ECG + image, ECG, image, text) the model can read."""
    feats, kinds = [], []
    seen = set()
    for item in load_items(recipe.data.train):
        kind = (bool(item.get("ecg")), bool(item.get("image")))
        if kind in seen:
            continue
        try:
            f = processor.sample(item, recipe.data.image_folder, recipe.data.ecg_folder)
        except DataError:
            continue  # e.g. an ECG sample for a model without an ECG encoder
        seen.add(kind)
        feats.append(f)
        kinds.append({(True, True): "ecg+image", (True, False): "ecg", (False, True): "image",
                      (False, False): "text"}[kind])
        if len(feats) == TINY_BATCH:
            break
    if not feats:
        raise DataError(f"{recipe.data.train}: no synthetic sample fits this model")
    return feats, kinds


def _component_lines(recipe: Recipe, model, tokenizer, template: str, counts: dict) -> list[str]:
    m = recipe.model
    tc = model.config.text_config

    def n(comp: str) -> str:
        return f"{counts[comp][1]:,} parameters" if comp in counts else ""

    kv = getattr(tc, "num_key_value_heads", None) or tc.num_attention_heads
    lines = [
        f"llm: {m.llm.name} ({tc.model_type}), {tc.num_hidden_layers} layers, hidden {tc.hidden_size}, "
        f"{tc.num_attention_heads} heads / {kv} kv, vocab {len(tokenizer)}, template {template}; {n('llm')}"
    ]
    if model.vision_tower is not None:
        t = model.vision_tower
        key, layers = layer_indices(t.options)
        depth = next((t.arch[k] for k in ("num_hidden_layers", "layers", "depth", "depths") if k in t.arch), None)
        depth = f"stages {depth}" if isinstance(depth, list) else f"{depth} layers" if depth else "default depth"
        named = f" {t.arch['model_name']}" if "model_name" in t.arch else ""
        where = f"layers {layers}" if key == "layers" else f"select_layer {layers[0] if layers else 'final'}"
        lines.append(
            f"vision: {m.vision.name}{named}, {depth}, {t.image_size} px, {where}, "
            f"{t.options.get('select_feature', 'patch')} -> {t.num_tokens} tokens x {t.hidden_size}; {n('vision')}"
        )
    else:
        lines.append("vision: none")
    if model.ecg_encoder is not None:
        e = model.ecg_encoder
        s = e.signal_spec
        shape = ", ".join(f"{k} {e.arch[k]}" for k in ("layers", "widths", "patch_size") if k in e.arch)
        lines.append(
            f"ecg: {m.ecg.name}{', ' + shape if shape else ''}, {s.n_leads} leads x {s.n_samples} samples "
            f"at {s.fs:g} Hz -> {e.num_tokens} tokens x {e.hidden_size}; {n('ecg')}"
        )
    else:
        lines.append("ecg: none")
    conns = []
    for modality, conn in model.connectors.items():
        spec = model.config.connectors[modality]
        enc = model.vision_tower if modality == "image" else model.ecg_encoder
        conns.append(f"{modality} {spec['name']} {enc.hidden_size}->{model.config.text_config.hidden_size}")
    lines.append(f"connectors: {', '.join(conns) or 'none'}, layout {m.layout}; {n('connectors')}")
    return lines
