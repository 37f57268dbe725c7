#!/usr/bin/env bash
# Train a recipe on N processes of this machine (one per GPU; gloo on CPU), e.g.
#   NPROC=2 scripts/train_torchrun.sh recipes/gem-phi2.yaml training.deepspeed=zero3
# Multi-node: set NNODES, NODE_RANK, MASTER_ADDR and MASTER_PORT as torchrun documents.
set -euo pipefail
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
exec torchrun --nproc_per_node "${NPROC:-2}" --nnodes "${NNODES:-1}" --node_rank "${NODE_RANK:-0}" \
    --master_addr "${MASTER_ADDR:-127.0.0.1}" --master_port "${MASTER_PORT:-29500}" \
    -m gemfactory.cli train "$@"
