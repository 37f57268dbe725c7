#!/usr/bin/env bash
# One GPU check, about 8 minutes on one recent GPU (issue 19, docs/performance.md):
#   1. the tiny recipe on CUDA: train (bf16), eval --device cuda, chat --device cuda;
#   2. the GEM layout at Phi-2 size with random weights (phi 2560 x 32 LLM, CLIP ViT-L/14-336 tower,
#      768 x 12 ECG ViT, mlp2x_gelu projectors; bf16, gradient checkpointing, 20 steps, LLM and
#      connectors trained): padded, packed, and packed under ZeRO-3; for each the trainer's
#      tokens/s and peak memory, the MFU derived from them and `gemfactory memory`'s estimate.
# Everything lands in OUT (default runs/gpu_check) with a report.txt to paste into
# docs/performance.md.
#
# usage: scripts/gpu_check.sh [--dry] [OUT]
#   --dry   no GPU needed: write the recipes, plan their memory and print the commands that a GPU
#           host would run (what the tests run)
# env:    DATA=folder of `gemfactory data synth` output (made in OUT/data when unset)
#         PEAK_TFLOPS=dense bf16 peak of the GPU for the MFU (looked up from its name when unset)
set -euo pipefail

DRY=0
if [[ "${1:-}" == "--dry" ]]; then DRY=1; shift; fi
OUT=${1:-runs/gpu_check}
DATA=${DATA:-$OUT/data}
STEPS=${STEPS:-20}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
REPORT=$OUT/report.txt
: > "$REPORT"

say() { echo "$*" | tee -a "$REPORT"; }
run() {  # print, and run unless --dry
    echo "+ $*"
    if [[ $DRY == 0 ]]; then "$@"; fi
}

if [[ $DRY == 0 ]]; then
    python - <<'EOF'
import sys, torch
if not torch.cuda.is_available():
    sys.exit("gpu_check.sh: no CUDA device visible to torch (use --dry on a CPU machine)")
print("GPU:", torch.cuda.get_device_name(0), f"{torch.cuda.get_device_properties(0).total_memory / 2**30:.0f} GiB")
EOF
fi
if [[ ! -f $DATA/train.json ]]; then run gemfactory data synth "$DATA"; fi

# ---- 1. the tiny recipe on CUDA ----------------------------------------------------------------
TINY=$OUT/tiny
cat > "$OUT/tiny.yaml" <<EOF
base: $(pwd)/recipes/tiny-gem.yaml
data: {train: $DATA/train.json, eval: $DATA/test.json, image_folder: $DATA/images, ecg_folder: $DATA/ecg}
training: {output_dir: $TINY, bf16: true, report_to: []}
EOF
run gemfactory train "$OUT/tiny.yaml"
run gemfactory eval "$TINY" --task synthetic --data "$DATA/test.json" --device cuda --out "$OUT/tiny_eval"
run gemfactory chat "$TINY" --device cuda --ecg "$DATA/ecg/test_02400" \
    "Does this ECG show bradycardia, a normal rate or tachycardia?"

# ---- 2. GEM layout at Phi-2 size, random weights ----------------------------------------------
phi2_recipe() {  # name packing deepspeed
    cat > "$OUT/$1.yaml" <<EOF
description: GEM layout at Phi-2 size, random weights (scripts/gpu_check.sh)
model:
  llm:
    name: phi
    dtype: bfloat16
    tokenizer_vocab_size: 768
    arch: {hidden_size: 2560, intermediate_size: 10240, num_hidden_layers: 32, num_attention_heads: 32,
           num_key_value_heads: 32, vocab_size: 51200}
  vision:
    name: clip
    arch: {hidden_size: 1024, intermediate_size: 4096, num_hidden_layers: 24, num_attention_heads: 16,
           image_size: 336, patch_size: 14}
  ecg:
    name: vit1d
    arch: {width: 768, layers: 12, heads: 12, patch_size: 50}
  connectors:
    image: {name: mlp2x_gelu}
    ecg: {name: mlp2x_gelu}
  template: phi
data:
  train: $DATA/train.json
  image_folder: $DATA/images
  ecg_folder: $DATA/ecg
  max_length: 1024
  packing: $2
  group_by: modality_length
  num_workers: 4
stages:
  - {name: finetune, max_steps: $STEPS, batch_size: 16, lr: 1.0e-5, warmup_ratio: 0.0,
     tune: {llm: full, vision: frozen, ecg: frozen, connectors: full}}
training:
  output_dir: $OUT/$1
  bf16: true
  gradient_checkpointing: true
  fused_loss: $([[ $3 == none ]] && echo true || echo false)
  logging_steps: 5
  report_to: []
EOF
    if [[ $3 != none ]]; then echo "  deepspeed: $3" >> "$OUT/$1.yaml"; fi
}

for run_name in "phi2_padded false none" "phi2_packed true none" "phi2_packed_zero3 true zero3"; do
    set -- $run_name
    phi2_recipe "$1" "$2" "$3"
    say "== $1 (packing $2, deepspeed $3)"
    gemfactory -q memory "$OUT/$1.yaml" --gpu-memory 80 | sed 's/^/  estimate /' | tee -a "$REPORT" || true
    if [[ $DRY == 0 ]]; then
        gemfactory train "$OUT/$1.yaml" 2>&1 | tee "$OUT/$1.log" | grep -E "summary:|error" || true
        python scripts/gpu_mfu.py "$OUT/$1.log" "$OUT/$1.yaml" | tee -a "$REPORT"
    else
        echo "+ gemfactory train $OUT/$1.yaml; python scripts/gpu_mfu.py $OUT/$1.log $OUT/$1.yaml"
    fi
done
say "report: $REPORT"
