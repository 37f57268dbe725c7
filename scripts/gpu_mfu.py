"""Tokens/s, MFU and peak memory of one `gemfactory train` run, from its log (scripts/gpu_check.sh).

usage: python scripts/gpu_mfu.py TRAIN_LOG RECIPE

MFU: real tokens/s x 6 x the LLM's parameters without its input embedding (the usual model FLOPs:
no recomputation by gradient checkpointing, attention and the frozen towers' forward not counted;
attention is under 1% here at a few hundred tokens per sample) over the GPU's dense bf16 peak
(PEAK_TFLOPS, or looked up from the device name).
"""
from __future__ import annotations

import os
import re
import sys

PEAKS = {"H200": 989, "H100": 989, "A100": 312, "L40S": 362, "L40": 181, "A10": 125, "L4": 121,
         "4090": 165, "A6000": 155}  # dense bf16 TFLOP/s
SUMMARY = re.compile(r"summary: (\d+) steps in ([\d.]+) s, ([\d.]+) samples/s, ([\d.]+) tokens/s, "
                     r"peak memory ([\d.]+) GiB")


def peak_tflops() -> float | None:
    if os.environ.get("PEAK_TFLOPS"):
        return float(os.environ["PEAK_TFLOPS"])
    import torch

    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name(0)
    return next((v for k, v in PEAKS.items() if k in name), None)


def llm_matmul_params(recipe_path: str) -> int:
    from gemfactory.config import load_recipe
    from gemfactory.data.recipe_tokenizer import tokenizer_for_recipe
    from gemfactory.model.builder import recipe_template
    from gemfactory.train.memory import meta_model

    recipe = load_recipe(recipe_path)
    model = meta_model(recipe, tokenizer_for_recipe(recipe, recipe_template(recipe)))
    llm = model.language_model
    return sum(p.numel() for p in llm.parameters()) - llm.get_input_embeddings().weight.numel()


def main(log_path: str, recipe_path: str) -> int:
    with open(log_path, encoding="utf-8", errors="replace") as f:
        text = f.read()
    found = SUMMARY.findall(text)
    if not found:
        print(f"  no stage summary in {log_path} (the run failed? see the log)")
        return 1
    steps, secs, samples_s, tokens_s, peak = (float(x) for x in found[-1])
    n = llm_matmul_params(recipe_path)
    line = (f"  measured   {int(steps)} steps in {secs:.1f} s, {samples_s:.1f} samples/s, {tokens_s:.0f} tokens/s, "
            f"peak memory {peak:.2f} GiB")
    tflops = peak_tflops()
    if tflops:
        line += f", MFU {tokens_s * 6 * n / (tflops * 1e12):.1%} of {tflops:g} TFLOP/s ({n / 1e9:.2f} B LLM params)"
    print(line)
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__.strip().splitlines()[2])
    sys.exit(main(sys.argv[1], sys.argv[2]))
