"""Process-group life cycle shared by every launcher (torchrun, deepspeed, srun + torchrun).

A launcher sets ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``; HF's TrainingArguments (accelerate) or
DeepSpeed join the group for training, :func:`distributed_run` joins it for commands that have no
trainer (eval). Leaving is always the same, in this order: dataloader iterators (and their worker
processes) are collected, the ranks meet at a barrier, the process group is destroyed, and only
then the interpreter exits. Exiting with a live gloo group lets its C++ worker threads outlive
the interpreter: their ``std::thread`` destructors then call ``std::terminate`` ("terminate called
without an active exception", SIGABRT) on whichever rank finalises first.
"""
from __future__ import annotations

import gc
import logging
import multiprocessing
import os
import random
import threading
from contextlib import contextmanager

import numpy as np
import torch

log = logging.getLogger(__name__)


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    return rank() == 0


def initialized() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def join_from_env() -> bool:
    """Join the process group a launcher described in the environment (gloo without a GPU)."""
    if initialized() or world_size() <= 1:
        return initialized()
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    torch.distributed.init_process_group(backend)
    return True


def leave(succeeded: bool = True) -> None:
    """Tear down in order: dataloader workers, barrier (only after success: a failed rank must not
    wait for the others), process group. A no-op without a group."""
    gc.collect()  # iterators caught in reference cycles shut their worker processes down now
    if initialized():
        if succeeded:
            torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    lingering = [t.name for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon]
    if lingering:  # python joins these at exit; named so a hang at exit can be traced
        log.debug("threads still running at exit: %s", ", ".join(lingering))


@contextmanager
def distributed_run(join: bool = False):
    """Wrap a command: ``join`` the launcher's group first (commands without a trainer), always
    leave it before returning, whether the body succeeded or raised."""
    if join:
        join_from_env()
    try:
        yield
    except BaseException:
        leave(succeeded=False)
        raise
    leave(succeeded=True)


def shard() -> tuple[int, int]:
    """(rank, world size) of the joined group; (0, 1) without one."""
    if not initialized():
        return 0, 1
    return torch.distributed.get_rank(), torch.distributed.get_world_size()


def all_gather(obj) -> list:
    """``obj`` of every rank, in rank order (``[obj]`` without a group)."""
    if not initialized():
        return [obj]
    out = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(out, obj)
    return out


class WorkerSeeds:
    """``worker_init_fn`` seeding each dataloader worker from (seed, rank, epoch, worker id):
    workers of different ranks or epochs never repeat a random stream, and a rerun (or a resumed
    run) draws the same one. The trainer sets ``epoch`` before each epoch's batches are fetched; it
    lives in shared memory, so persistent workers (started once, kept across epochs) see it too
    and reseed at their first sample of a new epoch (:class:`EpochSeededDataset`)."""

    def __init__(self, seed: int, rank: int = 0):
        self.seed, self.rank = seed, rank
        self._epoch = multiprocessing.RawValue("q", 0)  # inherited by fork and spawn workers alike
        self._seeded_for: int | None = None  # in a worker: the epoch its generators were seeded for

    @property
    def epoch(self) -> int:
        return self._epoch.value

    @epoch.setter
    def epoch(self, value: int) -> None:
        self._epoch.value = value

    def worker_seed(self, worker_id: int, epoch: int | None = None) -> int:
        epoch = self.epoch if epoch is None else epoch
        return int(np.random.SeedSequence([self.seed, self.rank, epoch, worker_id]).generate_state(1)[0])

    def __call__(self, worker_id: int) -> None:
        epoch = self.epoch
        seed = self.worker_seed(worker_id, epoch)
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)
        self._seeded_for = epoch

    def refresh(self) -> bool:
        """In a worker: reseed when a new epoch started since it last seeded (True then)."""
        info = torch.utils.data.get_worker_info()
        if info is None or self._seeded_for == self.epoch:
            return False
        self(info.id)
        return True


class EpochSeededDataset(torch.utils.data.Dataset):
    """A map-style dataset whose workers reseed (``WorkerSeeds.refresh``) before each sample and,
    in a persistent worker, pass a new epoch on to the dataset's ``set_epoch`` (its worker copy is
    not the one the trainer's callbacks update)."""

    def __init__(self, dataset, seeds: WorkerSeeds):
        self.dataset, self.seeds = dataset, seeds

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, i):
        if self.seeds.refresh() and hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(self.seeds.epoch)
        return self.dataset[i]
