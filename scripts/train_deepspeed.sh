#!/usr/bin/env bash
# Train a recipe with DeepSpeed's own launcher, e.g.
#   NGPUS=8 scripts/train_deepspeed.sh recipes/llava-v1.5-7b.yaml training.deepspeed=zero3
# Several nodes from one launch (the launcher reaches the hosts of the hostfile over ssh/pdsh):
#   HOSTFILE=hosts scripts/train_deepspeed.sh recipes/gem-vicuna7b.yaml training.deepspeed=zero2
# Several nodes without ssh (SLURM, containers): run it on every node with its NODE_RANK:
#   HOSTFILE=hosts NODE_RANK=0 MASTER_ADDR=node0 MASTER_PORT=29500 scripts/train_deepspeed.sh RECIPE
# A hostfile has one line per node: "<hostname> slots=<processes>".
set -euo pipefail
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
launcher=(deepspeed)
if [ -n "${HOSTFILE:-}" ]; then launcher+=(--hostfile "$HOSTFILE"); else launcher+=(--num_gpus "${NGPUS:-1}"); fi
if [ -n "${NODE_RANK:-}" ]; then
    launcher+=(--no_ssh --node_rank "$NODE_RANK" --master_addr "${MASTER_ADDR:?set MASTER_ADDR with NODE_RANK}")
fi
if [ -n "${MASTER_PORT:-}" ]; then launcher+=(--master_port "$MASTER_PORT"); fi
exec "${launcher[@]}" --no_local_rank --module gemfactory.cli train "$@"
