"""Dataloader workers are seeded per rank and epoch; the ECG loading statistics and skipped-sample
counts of the stage summary add up over dataloader workers (and ranks: test_distributed.py)."""
import json
import sys

import pytest
import torch
import yaml
from torch.utils.data import DataLoader, Dataset

from conftest import tiny_recipe
from gemfactory.train.distributed import WorkerSeeds


class _Draws(Dataset):
    def __len__(self):
        return 4

    def __getitem__(self, i):
        return torch.randint(0, 2**62, (1,)).item(), torch.utils.data.get_worker_info().id


def _draws(seeds: WorkerSeeds) -> dict[int, list[int]]:
    loader = DataLoader(_Draws(), batch_size=None, num_workers=2, worker_init_fn=seeds)
    out: dict[int, list[int]] = {}
    for value, worker in loader:
        out.setdefault(worker, []).append(value)
    return out


def test_workers_are_seeded_by_rank_epoch_and_worker():
    runs = {(rank, epoch): _draws(WorkerSeeds(seed=7, rank=rank, epoch=epoch)) for rank in (0, 1) for epoch in (0, 1)}
    streams = [tuple(v) for draws in runs.values() for v in draws.values()]
    assert len(streams) == 8 and len(set(streams)) == 8  # no two workers of any rank/epoch draw alike
    assert _draws(WorkerSeeds(seed=7, rank=1, epoch=1)) == runs[(1, 1)]  # a rerun draws the same
    assert _draws(WorkerSeeds(seed=8, rank=1, epoch=1)) != runs[(1, 1)]


def _summary(run) -> dict:
    return json.loads((run / "finetune" / "summary.json").read_text())


def _train(tiny_data, out, tmp_path, **data):
    from gemfactory.cli import main

    recipe = tiny_recipe(tiny_data, out, batch_size=6)
    recipe["data"].update(data)
    path = tmp_path / f"{out.name}.yaml"
    path.write_text(yaml.safe_dump(recipe))
    assert main(["train", str(path)]) == 0
    return _summary(out)


@pytest.mark.skipif(sys.platform != "linux", reason="worker processes are forked (Linux)")
def test_ecg_statistics_add_up_over_dataloader_workers(tiny_data, tmp_path):
    """One epoch over the whole set: with 2 workers each record is still counted exactly once."""
    items = json.loads((tiny_data / "train.json").read_text())
    inline = _train(tiny_data, tmp_path / "w0", tmp_path, num_workers=0)["loading"]
    workers = _train(tiny_data, tmp_path / "w2", tmp_path, num_workers=2)
    assert workers["dataloader_workers"] == 2
    loading = workers["loading"]
    assert loading == inline
    assert loading["samples_seen"] == len(items) and loading["samples_skipped"] == 0
    assert loading["ecg"]["records"] == sum(1 for item in items if item.get("ecg")) > 0
