"""Why a successful distributed run could still abort at exit ("terminate called without an active
exception", SIGABRT): two gloo ranks run a few collectives and exit, with or without destroying the
process group first. Run it a few times under torchrun and count the failures:

    for i in $(seq 15); do OMP_NUM_THREADS=1 torchrun --nproc-per-node 2 --master-port $((30000 + RANDOM % 20000)) \
        scripts/gloo_exit_repro.py keep || echo FAILED; done      # 'keep': the group alive at exit
    ... scripts/gloo_exit_repro.py destroy ...                     # barrier + destroy_process_group first

On 2 CPU cores (torch 2.14.1): 'keep' failed 7 of 15 runs, 'destroy' 0 of 15. gemfactory leaves in the
'destroy' order (gemfactory/train/distributed.py).
"""
import sys

import torch
import torch.distributed as dist


def main(mode: str) -> None:
    dist.init_process_group("gloo")
    t = torch.ones(1000)
    for _ in range(20):
        dist.all_reduce(t)
        dist.all_gather([torch.empty(1000) for _ in range(dist.get_world_size())], t)
    if mode == "destroy":
        dist.barrier()
        dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "keep")
