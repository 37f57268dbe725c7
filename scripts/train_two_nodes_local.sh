#!/usr/bin/env bash
# Rehearse a 2-node launch on this machine: two launches ("nodes" 0 and 1) on 127.0.0.1, each
# with NPROC processes, through torchrun's c10d rendezvous or DeepSpeed's launcher with a hostfile
# (without ssh). Exits non-zero when either node fails; each node's output goes to LOG_DIR.
#   ENGINE=torchrun NPROC=2 scripts/train_two_nodes_local.sh RECIPE [key=value ...]
#   ENGINE=deepspeed NPROC=2 scripts/train_two_nodes_local.sh RECIPE training.deepspeed=zero2
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
engine="${ENGINE:-torchrun}"
nproc="${NPROC:-2}"
port="${MASTER_PORT:-29500}"
log_dir="${LOG_DIR:-$(mktemp -d)}"
mkdir -p "$log_dir"
export MASTER_ADDR=127.0.0.1 MASTER_PORT="$port" NPROC="$nproc"
pids=()
for node in 0 1; do
    if [ "$engine" = torchrun ]; then
        NNODES=2 RDZV_ID="local-$port" TORCHRUN_ARGS="--local-addr 127.0.0.1" \
            bash "$here/train_torchrun.sh" "$@" >"$log_dir/node$node.log" 2>&1 &
    elif [ "$engine" = deepspeed ]; then
        printf 'node0 slots=%s\nnode1 slots=%s\n' "$nproc" "$nproc" >"$log_dir/hostfile"
        HOSTFILE="$log_dir/hostfile" NODE_RANK=$node bash "$here/train_deepspeed.sh" "$@" \
            >"$log_dir/node$node.log" 2>&1 &
    else
        echo "ENGINE must be torchrun or deepspeed, got '$engine'" >&2; exit 2
    fi
    pids+=($!)
done
status=0
for node in 0 1; do
    if ! wait "${pids[$node]}"; then echo "node $node failed: see $log_dir/node$node.log" >&2; status=1; fi
done
echo "logs in $log_dir" >&2
exit $status
