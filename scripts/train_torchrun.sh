#!/usr/bin/env bash
# Train a recipe with torchrun: NPROC processes on this machine (one per GPU; gloo on CPU), e.g.
#   NPROC=2 scripts/train_torchrun.sh recipes/gem-phi2.yaml training.deepspeed=zero3
# Several nodes: run it once on every node with the same NNODES, MASTER_ADDR (a host every node
# reaches; it serves the c10d rendezvous) and MASTER_PORT, e.g. on each of 2 nodes:
#   NNODES=2 NPROC=8 MASTER_ADDR=node0 MASTER_PORT=29500 scripts/train_torchrun.sh RECIPE
# NNODES=1 uses a static rendezvous on MASTER_ADDR:MASTER_PORT; RDZV_ID names the job (default
# gemfactory) so that two jobs on the same endpoint do not meet. Extra torchrun flags: TORCHRUN_ARGS.
set -euo pipefail
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
nnodes="${NNODES:-1}"
launch=(torchrun --nproc-per-node "${NPROC:-2}" --nnodes "$nnodes")
if [ "$nnodes" = 1 ]; then
    launch+=(--master-addr "${MASTER_ADDR:-127.0.0.1}" --master-port "${MASTER_PORT:-29500}")
else
    launch+=(--rdzv-backend c10d --rdzv-endpoint "${MASTER_ADDR:?set MASTER_ADDR for several nodes}:${MASTER_PORT:-29500}"
             --rdzv-id "${RDZV_ID:-gemfactory}")
fi
# shellcheck disable=SC2206  # TORCHRUN_ARGS is a list of flags on purpose
launch+=(${TORCHRUN_ARGS:-})
exec "${launch[@]}" -m gemfactory.cli train "$@"
