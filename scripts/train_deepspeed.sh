#!/usr/bin/env bash
# Train a recipe with the DeepSpeed launcher (GPUs of this machine, or a hostfile), e.g.
#   NGPUS=8 scripts/train_deepspeed.sh recipes/llava-v1.5-7b.yaml training.deepspeed=zero3
#   HOSTFILE=hosts scripts/train_deepspeed.sh recipes/gem-vicuna7b.yaml training.deepspeed=zero2
set -euo pipefail
launcher=(deepspeed)
if [ -n "${HOSTFILE:-}" ]; then launcher+=(--hostfile "$HOSTFILE"); else launcher+=(--num_gpus "${NGPUS:-1}"); fi
exec "${launcher[@]}" --no_local_rank --module gemfactory.cli train "$@"
