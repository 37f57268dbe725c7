"""Throughput benchmarks, each measured side by side in one run; prints ``name: value`` lines and
a summary of the targets (met / MISSED) with each ratio's limit beside it.

- sizes (scripts/bench_sizes.py), at two sizes, ``tiny`` (LLM 2 x 64) and ``compute`` (LLM 8 x 512,
  vocab 32k, 576 image tokens): real (non-pad) tokens/s of packed GemForCausalLM vs naive padded
  random batches and vs transformers' LlavaForConditionalGeneration on LLaVA's grouped batches,
  the real-token shares (their quotient is the ratio's limit) and LLaVA's fwd+bwd time over Gem's.
- cache: stage-1 steps/s (LLM and towers frozen) with the frozen-tower feature cache vs
  recomputing the towers, with towers big enough to dominate the step (their share is printed).
- ecg: read_ecg records/s on one thread at 500 Hz (no resampling) and 100 Hz (5x upsampled),
  wfdb.rdrecord for comparison, where a sample's loading time goes, and the share of step time
  spent waiting for batches with 0 and 2 workers.
- cli: wall time of ``gemfactory --help`` and ``gemfactory list``.

Usage: python scripts/bench_train.py [--only sizes cache ecg cli] [--sizes tiny compute]
"""
from __future__ import annotations

import argparse
import copy
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

MODEL = {
    "llm": {"name": "vicuna", "tokenizer_vocab_size": 400,
            "arch": {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
                     "num_attention_heads": 2, "num_key_value_heads": 2}},
    "vision": {"name": "clip", "arch": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                                        "num_attention_heads": 2, "image_size": 32, "patch_size": 16}},
    "ecg": {"name": "vit1d", "arch": {"tiny": True, "width": 32, "layers": 1, "heads": 2}},
    "connectors": {"image": {"name": "mlp2x_gelu"}, "ecg": {"name": "linear"}},
    "template": "vicuna_v1",
}


RESULTS: dict[str, float] = {}
# figure, comparison, target, what the issue asks
TARGETS = [
    ("feature_cache_speedup", ">=", 3.0, "stage-1 steps/s with the feature cache vs recomputing towers"),
    ("ecg_records_per_s_1core_500hz", ">=", 1000, "ECG records/s on one core"),
    ("data_wait_share_workers_2", "<", 0.05, "share of step time waiting for data, 2 workers"),
    ("cli_help_s", "<", 1.0, "gemfactory --help seconds"),
    ("cli_list_s", "<", 3.0, "gemfactory list seconds"),
]


def figure(name: str, value: float, fmt: str) -> None:
    RESULTS[name] = value
    print(f"{name}: {value:{fmt.rstrip('x')}}{'x' if fmt.endswith('x') else ''}")


def summary(sizes: list[str]) -> None:
    from bench_sizes import CONDITIONS, targets

    print("== summary")
    for size in sizes:
        for name, limit in CONDITIONS:
            key = f"{size}_{name}"
            if key in RESULTS:
                ok = RESULTS[key] <= limit
                print(f"[data] {key}: {RESULTS[key]:.3f} (the targets assume <= {limit}: "
                      f"{'holds' if ok else 'DOES NOT HOLD'})")
    for name, op, target, what in [t for size in sizes for t in targets(size)] + TARGETS:
        if name not in RESULTS:
            continue
        value = RESULTS[name]
        met = value >= target if op == ">=" else value < target
        limit = f", limit {RESULTS[name + '_limit']:.3g}" if name + "_limit" in RESULTS else ""
        print(f"{name}: {value:.3g}{limit} (target {op} {target:g}: {'met' if met else 'MISSED'}) - {what}")


def build(data: Path, train: Path, max_length: int, model_cfg: dict = MODEL):
    import torch

    from gemfactory.config import recipe_from_dict
    from gemfactory.data.dataset import GemDataset
    from gemfactory.data.processor import Processor
    from gemfactory.model.builder import build_model, build_tokenizer
    from gemfactory.data.recipe_tokenizer import tokenizer_texts
    from gemfactory.registry import TEMPLATES

    torch.manual_seed(0)
    recipe = recipe_from_dict({"model": copy.deepcopy(model_cfg), "data": {
        "train": str(train), "image_folder": str(data / "images"), "ecg_folder": str(data / "ecg"),
        "max_length": max_length}})
    template = TEMPLATES.get("vicuna_v1")()
    tok = build_tokenizer(recipe.model, tokenizer_texts(recipe, template))
    model = build_model(recipe.model, tok).float()
    proc = Processor.from_model(model, tok, template, max_length)
    ds = GemDataset(train, proc, recipe.data.image_folder, recipe.data.ecg_folder)
    return model, tok, proc, ds


def train_epoch(model, batches) -> tuple[float, int, int]:
    """Seconds for fwd+bwd+step over the batches; real tokens; computed tokens."""
    import torch

    from gemfactory.data.packing import REAL_TOKENS

    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    model.train()
    real = computed = 0
    start = time.perf_counter()
    for batch in batches:
        batch = dict(batch)
        n_real = batch.pop(REAL_TOKENS, None)
        real += int(n_real) if n_real is not None else int(batch["attention_mask"].sum())
        computed += batch["input_ids"].numel()
        model(**batch).loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return time.perf_counter() - start, real, computed


def bench_cache(data: Path, batch_size: int, repeat: int) -> None:
    """Stage 1 (LLM and towers frozen, connectors trained) with the towers' features from the
    cache (filled by an earlier epoch) vs recomputing them every step; towers dominate here."""
    import torch

    from gemfactory.data.dataset import Collator
    from gemfactory.model.feature_cache import attach_feature_caches, detach_feature_caches

    model_cfg = copy.deepcopy(MODEL)
    model_cfg["vision"]["arch"].update(hidden_size=384, intermediate_size=1536, num_hidden_layers=8,
                                       num_attention_heads=6, image_size=64, patch_size=8)
    model_cfg["ecg"]["arch"] = {"tiny": True, "width": 256, "layers": 6, "heads": 4}
    model, tok, proc, ds = build(data, data / "train.json", 512, model_cfg)
    model.requires_grad_(False)
    model.connectors.requires_grad_(True)
    feats = [ds[i] for i in range(len(ds))]
    batches = [Collator(tok.pad_token_id)(feats[b:b + batch_size]) for b in range(0, len(feats), batch_size)]
    init = copy.deepcopy(model.state_dict())
    frozen = {"vision": "frozen", "ecg": "frozen"}
    with tempfile.TemporaryDirectory() as folder:
        model.load_state_dict(init)
        attach_feature_caches(model, frozen, folder)
        cold = train_epoch(model, batches)[0]  # computes and stores every feature
        detach_feature_caches(model)
        best = {}
        for _ in range(repeat):
            for name in ("recompute", "cached"):
                model.load_state_dict(init)
                if name == "cached":
                    attach_feature_caches(model, frozen, folder)
                secs = train_epoch(model, batches)[0]
                detach_feature_caches(model)
                best[name] = min(best.get(name, 1e9), secs)
    start = time.perf_counter()
    with torch.no_grad():
        for batch in batches:
            for key, tower in (("pixel_values", model.vision_tower), ("ecg", model.ecg_encoder)):
                if batch.get(key) is not None:
                    tower(batch[key])
    steps = len(batches)
    figure("stage1_tower_share_of_step_time", (time.perf_counter() - start) / best['recompute'], ".2f")
    figure("stage1_recompute_steps_per_s", steps / best['recompute'], ".2f")
    figure("stage1_cached_steps_per_s", steps / best['cached'], ".2f")
    figure("feature_cache_first_epoch_vs_recompute", best['recompute'] / cold, ".2fx")
    figure("feature_cache_speedup", best['recompute'] / best['cached'], ".2fx")


def bench_ecg(data: Path, n_records: int = 200) -> None:
    """Records/s of read_ecg (WFDB read, mV, lead reorder, resample, crop/pad) on one thread,
    for 12-lead 10 s records at the encoder's rate (500 Hz) and at 100 Hz (5x upsampled); wfdb's
    own reader (rdrecord, which parses the header with pandas) on the same records for comparison."""
    import numpy as np
    import torch
    import wfdb

    from gemfactory.data.ecg_io import read_ecg, write_ecg
    from gemfactory.ecg.spec import STANDARD_LEADS, SignalSpec

    torch.set_num_threads(1)
    spec = SignalSpec()
    rng = np.random.default_rng(0)
    folder = data / "ecg_bench"
    sets = {}
    for fs in (500, 100):
        sets[fs] = []
        for k in range(n_records):
            record = folder / f"r{fs}_{k}"
            write_ecg(record, rng.standard_normal((12, 10 * fs)), fs, list(STANDARD_LEADS)[::-1])
            sets[fs].append(record)
    for fs, records in sets.items():
        read_ecg(records[0], spec)  # first call imports scipy
        start = time.perf_counter()
        for r in records:
            read_ecg(r, spec)
        figure(f"ecg_records_per_s_1core_{fs}hz", len(records) / (time.perf_counter() - start), ".0f")
    some = sets[500][:20]
    start = time.perf_counter()
    for r in some:
        wfdb.rdrecord(str(r))
    figure("wfdb_rdrecord_per_s_1core", len(some) / (time.perf_counter() - start), ".0f")


def bench_data_wait(data: Path, batch_size: int) -> None:
    """Share of training step time spent waiting for the next batch (ECG + image + text loading),
    with data.num_workers 0 and 2, on the synthetic mixed data and the tiny model; the loader as
    the trainer sets it up (workers kept across epochs, 4 batches prefetched per worker). First
    where one sample's loading time goes, by modality."""
    import torch
    from torch.utils.data import DataLoader

    from gemfactory.data.dataset import Collator

    model, tok, proc, ds = build(data, data / "train.json", 512)
    ds[0]  # first calls import and set up what later ones reuse
    by_kind: dict[str, list[float]] = {}
    for i in range(len(ds)):
        start = time.perf_counter()
        f = ds[i]
        kind = "+".join(k for k, key in (("image", "pixel_values"), ("ecg", "ecg")) if key in f) or "text"
        by_kind.setdefault(kind, []).append(time.perf_counter() - start)
    for kind, secs in sorted(by_kind.items()):
        figure(f"load_ms_per_sample_{kind.replace('+', '_')}", 1000 * sum(secs) / len(secs), ".2f")
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    model.train()
    for workers in (0, 2):
        loader = DataLoader(ds, batch_size=batch_size, shuffle=True, num_workers=workers,
                            collate_fn=Collator(tok.pad_token_id), generator=torch.Generator().manual_seed(0),
                            persistent_workers=workers > 0, prefetch_factor=4 if workers else None)
        wait = total = 0.0
        for epoch in range(2):
            it = iter(loader)
            while True:
                t0 = time.perf_counter()
                try:
                    batch = next(it)
                except StopIteration:
                    break
                t1 = time.perf_counter()
                model(**batch).loss.backward()
                opt.step()
                opt.zero_grad(set_to_none=True)
                if epoch:  # the first epoch starts the workers and warms up
                    wait += t1 - t0
                    total += time.perf_counter() - t0
        figure(f"data_wait_share_workers_{workers}", wait / total, ".3f")


def bench_cli() -> None:
    exe = [sys.executable, "-m", "gemfactory.cli"]
    for name, args in (("help", ["--help"]), ("list", ["list"])):
        best = 1e9
        for _ in range(3):
            start = time.perf_counter()
            subprocess.run(exe + args, check=True, capture_output=True)
            best = min(best, time.perf_counter() - start)
        figure(f"cli_{name}_s", best, ".2f")


PARTS = ["sizes", "cache", "ecg", "cli"]


def main() -> None:
    from bench_sizes import SIZES, bench_size, model_config

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=8, help="batch of the cache and data-wait parts")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--only", choices=PARTS, nargs="*")
    ap.add_argument("--sizes", choices=list(SIZES), nargs="*", help="model sizes of the sizes part (default: all)")
    args = ap.parse_args()
    only = set(args.only or PARTS)
    sizes = args.sizes or list(SIZES)
    from gemfactory.data.synth import synthesize

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        synthesize(data, n_train=48, n_test=4, seed=0)

        def build_gem(spec):
            model, tok = build(data, data / "train.json", 1024, model_config(spec))[:2]
            return model, tok.pad_token_id

        if "sizes" in only:
            for size in sizes:
                start = time.perf_counter()
                bench_size(size, SIZES[size], build_gem, figure)
                figure(f"{size}_bench_seconds", time.perf_counter() - start, ".0f")
        if "cache" in only:
            bench_cache(data, args.batch, args.repeat)
        if "ecg" in only:
            bench_ecg(data)
            bench_data_wait(data, args.batch)
        if "cli" in only:
            bench_cli()
    summary(sizes if "sizes" in only else [])


if __name__ == "__main__":
    main()
