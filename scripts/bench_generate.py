"""Batched vs sequential generation throughput of gemfactory.infer on a tiny model.

Eight mixed-modality prompts (text only, ECG, image, ECG + image) are answered one call each and
then in one left-padded batch, side by side in this run, with greedy decoding and a fixed number of
new tokens (min_new_tokens = max_new_tokens) so that both produce the same token count. Prints
new tokens/s of each and ``generate_batch_speedup: X.Xx`` (the ratio), and checks that the batch
gives the same tokens as the single calls.

The headline ratio is for prompts whose ECG signals and images are already in memory (tensors and
PIL images, as in the app or a server): it measures generation. A second line gives the ratio
when every call also reads its WFDB record and image file, a fixed cost per prompt that batching
does not shrink.

Without --checkpoint the model is built untrained with the sizes of recipes/tiny-gem.yaml, its
tokenizer trained on a freshly synthesised dataset (speed does not depend on the weights).

Usage: python scripts/bench_generate.py [--checkpoint RUN_OR_MODEL_DIR] [--n 8] [--new-tokens 32]
"""
from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]


def build_untrained(recipe_path: Path, data: Path, work: Path) -> Path:
    """The recipe's model, untrained, saved as a checkpoint folder."""
    import torch

    from gemfactory.config import load_recipe
    from gemfactory.model.builder import build_model, build_tokenizer
    from gemfactory.data.recipe_tokenizer import tokenizer_texts
    from gemfactory.model.checkpoint import save_checkpoint
    from gemfactory.registry import TEMPLATES

    recipe = load_recipe(recipe_path, [f"data.train={data / 'train.json'}", f"data.eval={data / 'test.json'}",
                                       f"data.image_folder={data / 'images'}", f"data.ecg_folder={data / 'ecg'}"])
    torch.manual_seed(0)
    template = TEMPLATES.get(recipe.model.template)()
    tok = build_tokenizer(recipe.model, tokenizer_texts(recipe, template))
    model = build_model(recipe.model, tok)
    return save_checkpoint(model, tok, work / "model")


def mixed_prompts(data: Path, n: int):
    """``n`` test questions cycling through the kinds text / ECG / image / ECG + image."""
    from gemfactory.data.dataset import load_items
    from gemfactory.eval.run import _prompt

    items = load_items(data / "test.json")
    kinds = {}
    for item in items:
        kinds.setdefault((bool(item.get("ecg")), bool(item.get("image"))), []).append(item)
    order = [k for k in ((False, False), (True, False), (False, True), (True, True)) if k in kinds]
    chosen = [kinds[order[i % len(order)]][(i // len(order)) % len(kinds[order[i % len(order)]])] for i in range(n)]
    return [_prompt(item, data / "images", data / "ecg") for item in chosen]


def preloaded(loaded, prompts):
    """The same prompts with the ECG record read and the image opened beforehand."""
    from gemfactory.infer import Prompt

    p = loaded.processor
    return [Prompt(x.turns, image=p.open_image(x.image) if x.image is not None else None,
                   ecg=p.load_ecg(x.ecg) if x.ecg is not None else None) for x in prompts]


def side_by_side(loaded, prompts, settings, repeats):
    """Best-of-``repeats`` seconds of the single calls and of the batch, and their token ids."""
    import time

    from gemfactory.infer import generate_ids

    seq_times, batch_times = [], []
    for _ in range(repeats):  # interleaved, so that load changes hit both alike
        t0 = time.perf_counter()
        sequential = [generate_ids(loaded, [p], settings)[0] for p in prompts]
        seq_times.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        batched = generate_ids(loaded, prompts, settings)
        batch_times.append(time.perf_counter() - t0)
    return min(seq_times), min(batch_times), sequential, batched


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", help="a trained model or run folder (default: build the tiny recipe untrained)")
    ap.add_argument("--recipe", default=str(ROOT / "recipes" / "tiny-gem.yaml"))
    ap.add_argument("--n", type=int, default=8, help="prompts (batch size)")
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3, help="best of this many timings of each")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from gemfactory.data.synth import synthesize
    from gemfactory.infer import GenerationSettings, generate_ids, load_pretrained_model

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data = work / "data"
        synthesize(data, n_train=24, n_test=16, seed=0)
        path = args.checkpoint or build_untrained(Path(args.recipe), data, work)
        loaded = load_pretrained_model(path)
        prompts = mixed_prompts(data, args.n)
        settings = GenerationSettings(max_new_tokens=args.new_tokens, extra={"min_new_tokens": args.new_tokens})

        generate_ids(loaded, prompts[:2], settings)  # warm-up
        seq_s, batch_s, sequential, batched = side_by_side(loaded, preloaded(loaded, prompts), settings,
                                                           args.repeats)
        file_seq_s, file_batch_s, _, _ = side_by_side(loaded, prompts, settings, args.repeats)

    tokens = sum(len(ids) for ids in batched)
    assert tokens == sum(len(ids) for ids in sequential) == args.n * args.new_tokens, "token counts differ"
    seq_tps, batch_tps = tokens / seq_s, tokens / batch_s
    n_params = sum(p.numel() for p in loaded.model.parameters())
    print(f"model: {path if args.checkpoint else Path(args.recipe).name + ' (untrained)'}, "
          f"{n_params / 1e6:.2f}M parameters, {args.threads} CPU thread(s), device {loaded.model.device}")
    print(f"prompts: {args.n} (text/ECG/image/ECG+image), {args.new_tokens} new tokens each, "
          f"best of {args.repeats}")
    print(f"sequential: {seq_s:.3f} s  {seq_tps:.1f} tokens/s")
    print(f"batched:    {batch_s:.3f} s  {batch_tps:.1f} tokens/s")
    print(f"batched tokens identical to sequential: {'yes' if batched == sequential else 'NO'}")
    print(f"reading the ECG/image files in each call too: sequential {file_seq_s:.3f} s, "
          f"batched {file_batch_s:.3f} s, speedup {file_seq_s / file_batch_s:.1f}x")
    print(f"generate_batch_speedup: {batch_tps / seq_tps:.1f}x")


if __name__ == "__main__":
    main()
