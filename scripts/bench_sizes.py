"""Packed Gem vs naive padding vs LLaVA's loop, at two model sizes (used by bench_train.py).

Per size, one run, the same samples for every loop, fwd + bwd + AdamW step per batch, fp32 on CPU:

- ``padded``: GemForCausalLM on random batches padded to their longest sample (naive);
- ``llava``: transformers' LlavaForConditionalGeneration (same CLIP + Llama shapes, its own
  projector) on batches from LLaVA's modality+length-grouped sampler (``llava_order``, the
  algorithm of LLaVA's ``get_modality_length_grouped_indices``, world size 1), padded;
- ``packed``: GemForCausalLM with ``data.packing`` (modality_length order, rows laid end to end
  under ``sdpa_packed``) and ``training.fused_loss``; the padded Gem loop uses fused_loss too.

Samples are image+text (40% of them) or text: a prompt of 8-40 tokens, the image's tokens and a
Pareto-tailed reply of 16 tokens up to what fits 1024 tokens, labelled. The frozen vision tower's
features come from the feature cache for both models (filled before timing). The ratios printed
beside their limits: a loop's real-token share over the other's is the most removing padding can give.
"""
from __future__ import annotations

import copy
import random
import tempfile
import time

import torch
from torch import nn

SIZES = {
    "tiny": {"llm": {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 2,
                     "num_key_value_heads": 2},
             "vocab": 400, "image": {"image_size": 64, "patch_size": 8}, "samples": 96, "batch": 8, "repeat": 2},
    "compute": {"llm": {"hidden_size": 512, "intermediate_size": 1376, "num_hidden_layers": 8,
                        "num_attention_heads": 8, "num_key_value_heads": 8},
                "vocab": 32000, "image": {"image_size": 336, "patch_size": 14}, "samples": 16, "batch": 8,
                "repeat": 1},
}
TOWER = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2}
ROW = 1024


def model_config(spec: dict) -> dict:
    """GemForCausalLM's recipe model section: vicuna (Llama) LLM, CLIP tower, mlp2x_gelu projector."""
    return {"llm": {"name": "vicuna", "tokenizer_vocab_size": 400,
                    "arch": {**spec["llm"], "vocab_size": spec["vocab"]}},
            "vision": {"name": "clip", "arch": {**TOWER, **spec["image"]}},
            "connectors": {"image": {"name": "mlp2x_gelu"}}, "template": "vicuna_v1"}


def llava_model(gem):
    from transformers import (
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
    )

    text = gem.config.text_config
    torch.manual_seed(0)
    arch = {k: getattr(text, k) for k in ("hidden_size", "intermediate_size", "num_hidden_layers",
                                          "num_attention_heads", "num_key_value_heads")}
    return LlavaForConditionalGeneration(LlavaConfig(
        vision_config=CLIPVisionConfig(**TOWER, image_size=gem.vision_tower.image_size,
                                       patch_size=gem.config.vision["arch"]["patch_size"]),
        text_config=LlamaConfig(vocab_size=gem.get_input_embeddings().num_embeddings, **arch),
        image_token_id=gem.config.image_token_id, projector_hidden_act="gelu",
        vision_feature_layer=-2, vision_feature_select_strategy="default")).float()


class SelectedLayer(nn.Module):
    """What LLaVA takes from its CLIP: the hidden states of layer -2."""

    def __init__(self, clip):
        super().__init__()
        self.clip = clip

    def forward(self, pixels):
        return self.clip(pixels, output_hidden_states=True).hidden_states[-2]


class CachedLlavaTower(nn.Module):
    """LLaVA's vision tower behind gemfactory's feature cache: the hidden states LLaVA selects
    (layer -2, CLS included) come from disk once cached, as Gem's do."""

    def __init__(self, clip, folder):
        from gemfactory.model.feature_cache import FeatureCache

        super().__init__()
        self.select = SelectedLayer(clip.requires_grad_(False))
        self.cache = FeatureCache(folder, "llava", self.select, {"name": "llava-clip"})

    def forward(self, pixel_values, **kwargs):
        from transformers.modeling_outputs import BaseModelOutput

        feats = self.cache(pixel_values)
        return BaseModelOutput(last_hidden_state=feats, hidden_states=(feats, feats))


def make_samples(n: int, n_img: int, image_id: int, image_size: int, specials: set[int], seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    plain = next(t for t in range(5, 300) if t not in specials)
    gen = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        image = rng.random() < 0.4
        prompt = rng.randint(8, 40)
        room = ROW - prompt - (n_img if image else 0)
        reply = max(16, min(room, int(16 * rng.paretovariate(0.8))))
        ids = torch.randint(5, 300, (prompt + reply,), generator=gen)
        ids[torch.isin(ids, torch.tensor(sorted(specials)))] = plain
        labels = ids.clone()
        labels[:prompt] = -100
        f = {"input_ids": ids, "labels": labels}
        if image:  # placeholder tokens after the first prompt token
            f["input_ids"] = torch.cat([ids[:1], torch.full((n_img,), image_id), ids[1:]])
            f["labels"] = torch.cat([labels[:1], torch.full((n_img,), -100), labels[1:]])
            f["pixel_values"] = torch.randn(1, 3, image_size, image_size, generator=gen)
            f["image_size"] = torch.tensor([image_size, image_size])
        out.append(f)
    return out


def llava_order(lengths: list[int], has_image: list[bool], batch: int, world: int = 1, seed: int = 0) -> list[int]:
    """LLaVA's modality+length grouping: each modality shuffled and cut into megabatches of
    world x batch samples, each sorted longest first (then dealt to ranks by length: a no-op for one
    rank); the megabatches of both modalities shuffled together, the two last partial ones merged at the end."""
    gen = torch.Generator().manual_seed(seed)
    size = world * batch

    def megabatches(idx):
        perm = [idx[i] for i in torch.randperm(len(idx), generator=gen).tolist()]
        return [sorted(perm[i:i + size], key=lambda j: -lengths[j]) for i in range(0, len(perm), size)]

    image = megabatches([i for i, h in enumerate(has_image) if h])
    text = megabatches([i for i, h in enumerate(has_image) if not h])
    last = (image.pop() if image else []) + (text.pop() if text else [])
    groups = image + text
    groups = [groups[i] for i in torch.randperm(len(groups), generator=gen).tolist()]
    if last:
        groups.append(sorted(last))
    return [i for g in groups for i in g]


def _step(model, opt, batch) -> tuple[float, int, int]:
    """Seconds of one fwd + bwd + AdamW step; real tokens; computed tokens."""
    from gemfactory.data.packing import REAL_TOKENS

    batch = dict(batch)
    n_real = batch.pop(REAL_TOKENS, None)
    real = int(n_real) if n_real is not None else int(batch["attention_mask"].sum())
    start = time.perf_counter()
    model(**batch).loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    return time.perf_counter() - start, real, batch["input_ids"].numel()


def round_robin(runs: dict, repeat: int) -> dict:
    """One step of each loop in turn, so that load from other work on the cores falls on every loop
    alike; each model first runs one uncounted fwd + bwd (allocator and kernel warm-up)."""
    opts = {}
    for name, (model, batches) in runs.items():
        model.train()
        opts[name] = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
        warm = dict(min(batches, key=lambda b: b["input_ids"].numel()))
        warm.pop("num_real_tokens", None)
        model(**warm).loss.backward()
        model.zero_grad(set_to_none=True)
    totals = {name: [0.0, 0, 0] for name in runs}
    for _ in range(repeat):
        for i in range(max(len(batches) for _, batches in runs.values())):
            for name, (model, batches) in runs.items():
                if i < len(batches):
                    for k, v in enumerate(_step(model, opts[name], batches[i])):
                        totals[name][k] += v
    return totals


def bench_size(name: str, spec: dict, build_gem, figure) -> None:
    from gemfactory.data.dataset import Collator
    from gemfactory.data.packing import PackingCollator
    from gemfactory.data.sampler import GroupedSampler

    gem, pad = build_gem(spec)
    gem.fused_loss = True  # training.fused_loss
    gem.vision_tower.requires_grad_(False)
    llava = llava_model(gem)
    packed_gem = copy.deepcopy(gem)
    packed_gem.language_model.set_attn_implementation("sdpa_packed")  # what the trainer picks under sdpa
    n_img = gem.modality_tokens()["image"]
    specials = {t for t in (gem.config.image_token_id, gem.config.ecg_token_id, pad) if t is not None}
    feats = make_samples(spec["samples"], n_img, gem.config.image_token_id, gem.vision_tower.image_size, specials)
    lengths = [len(f["input_ids"]) for f in feats]
    has_image = ["pixel_values" in f for f in feats]
    batch, n = spec["batch"], len(feats)
    print(f"# {name}: LLM {spec['llm']['num_hidden_layers']} x {spec['llm']['hidden_size']}, vocab "
          f"{spec['vocab']}, {n_img} image tokens, {n} samples (tokens min {min(lengths)}, median "
          f"{sorted(lengths)[n // 2]}, max {max(lengths)}), batch {batch}")

    def batches_of(order, collate):
        return [collate([feats[i] for i in order[b:b + batch]]) for b in range(0, n, batch)]

    shuffled = torch.randperm(n, generator=torch.Generator().manual_seed(0)).tolist()
    grouped = GroupedSampler(lengths, ["image" if h else "text" for h in has_image], batch, seed=0).order(0)
    llava_batches = batches_of(llava_order(lengths, has_image, batch), Collator(pad))
    for b in llava_batches:
        b.pop("image_sizes", None)
    runs = {"padded": (gem, batches_of(shuffled, Collator(pad))), "llava": (llava, llava_batches),
            "packed": (packed_gem, batches_of(grouped, PackingCollator(pad, ROW, flatten=True)))}
    with tempfile.TemporaryDirectory() as folder:
        _fill_caches(gem, packed_gem, llava, feats, folder)
        totals = round_robin(runs, spec["repeat"])
        fwd_bwd = _fwd_bwd(gem, llava, llava_batches, spec["repeat"])
    _report(name, totals, fwd_bwd, feats, grouped, pad, batch, figure)


def _fill_caches(gem, packed_gem, llava, feats, folder) -> None:
    """Both models' frozen towers behind a feature cache, filled before timing (the towers' first
    pass is not what is measured)."""
    from gemfactory.model.feature_cache import attach_feature_caches

    pixels = torch.cat([f["pixel_values"] for f in feats if "pixel_values" in f])
    llava.model.vision_tower = CachedLlavaTower(llava.model.vision_tower, folder)
    with torch.no_grad():
        for cache in attach_feature_caches(gem, {"vision": "frozen"}, folder):
            cache(pixels)
            cache.flush()
        llava.model.vision_tower.cache(pixels)
    llava.model.vision_tower.cache.flush()
    attach_feature_caches(packed_gem, {"vision": "frozen"}, folder)


def _fwd_bwd(gem, llava, batches, repeat: int) -> dict:
    """Both models on the same padded batch (the shortest of LLaVA's loop), best of `repeat`."""
    batch = min(batches, key=lambda b: b["input_ids"].numel())
    gem.language_model.set_attn_implementation("sdpa")
    times = {}
    for _ in range(repeat):
        for run, model in (("gem", gem), ("llava", llava)):
            model.eval()  # no dropout in either; GemForCausalLM then skips its idle-tower pass
            start = time.perf_counter()
            model(**batch).loss.backward()
            times[run] = min(times.get(run, 1e9), time.perf_counter() - start)
            model.zero_grad(set_to_none=True)
    return times


def _report(name, best, fwd_bwd, feats, grouped, pad, batch, figure) -> None:
    from gemfactory.data.packing import REAL_TOKENS, PackingCollator

    speed = {k: v[1] / v[0] for k, v in best.items()}
    share = {k: v[1] / v[2] for k, v in best.items()}
    for run in best:
        figure(f"{name}_{run}_real_tokens_per_s", speed[run], ".0f")
        figure(f"{name}_{run}_real_token_share", share[run], ".3f")
    for run, peer in (("padded_random", "padded"), ("llava_grouped", "llava")):
        ratio = speed["packed"] / speed[peer]
        limit = share["packed"] / share[peer]
        figure(f"{name}_packed_vs_{run}", ratio, ".2fx")
        figure(f"{name}_packed_vs_{run}_limit", limit, ".2fx")
        figure(f"{name}_packed_vs_{run}_share_of_limit", ratio / limit, ".3f")
    rows = [PackingCollator(pad, ROW)([feats[i] for i in grouped[b:b + batch]]) for b in range(0, len(feats), batch)]
    figure(f"{name}_packed_2d_rows_real_token_share_1024", sum(int(b[REAL_TOKENS]) for b in rows)
           / sum(b["input_ids"].numel() for b in rows), ".3f")
    figure(f"{name}_gem_fwd_bwd_s", fwd_bwd["gem"], ".4f")
    figure(f"{name}_llava_fwd_bwd_s", fwd_bwd["llava"], ".4f")
    figure(f"{name}_gem_vs_llava_fwd_bwd", fwd_bwd["llava"] / fwd_bwd["gem"], ".2fx")


def targets(name: str) -> list[tuple]:
    """(figure, comparison, target, what) of one size, as issue 19 states them."""
    return [
        (f"{name}_packed_vs_padded_random", ">=", 1.9, "real tokens/s, packed vs naive padded random batches"),
        (f"{name}_packed_vs_llava_grouped", ">=", 1.1, "real tokens/s, packed vs LLaVA (its model, grouped sampler)"),
        (f"{name}_packed_vs_padded_random_share_of_limit", ">=", 0.95, "packed/naive ratio over its limit"),
        (f"{name}_packed_vs_llava_grouped_share_of_limit", ">=", 0.95, "packed/LLaVA ratio over its limit"),
        (f"{name}_packed_real_token_share", ">=", 0.98, "real-token share, packed 1024-token rows"),
        (f"{name}_gem_vs_llava_fwd_bwd", ">=", 1.0, "LLaVA fwd+bwd time / Gem fwd+bwd time"),
    ]


# data preconditions of the targets: naive batches at most half real, LLaVA's at most 85% real
CONDITIONS = [("padded_real_token_share", 0.5), ("llava_real_token_share", 0.85)]
