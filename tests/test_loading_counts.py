"""Dataloader workers are seeded per rank and epoch; the ECG loading statistics and skipped-sample
counts of the stage summary add up over dataloader workers (and ranks: test_distributed.py)."""
import json
import sys

import pytest
import torch
import yaml
from torch.utils.data import DataLoader, Dataset

from conftest import tiny_recipe
from gemfactory.train.distributed import EpochSeededDataset, WorkerSeeds


class _Draws(Dataset):
    def __len__(self):
        return 4

    def __getitem__(self, i):
        return torch.randint(0, 2**62, (1,)).item(), torch.utils.data.get_worker_info().id


def _draws(loader) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for value, worker in loader:
        out.setdefault(worker, []).append(value)
    return out


def _epoch_draws(rank: int, epoch: int, seed: int = 7) -> dict[int, list[int]]:
    seeds = WorkerSeeds(seed, rank)
    seeds.epoch = epoch
    return _draws(DataLoader(EpochSeededDataset(_Draws(), seeds), batch_size=None, num_workers=2,
                             worker_init_fn=seeds))


def test_workers_are_seeded_by_rank_epoch_and_worker():
    runs = {(rank, epoch): _epoch_draws(rank, epoch) for rank in (0, 1) for epoch in (0, 1)}
    streams = [tuple(v) for draws in runs.values() for v in draws.values()]
    assert len(streams) == 8 and len(set(streams)) == 8  # no two workers of any rank/epoch draw alike
    assert _epoch_draws(1, 1) == runs[(1, 1)]  # a rerun draws the same
    assert _epoch_draws(1, 1, seed=8) != runs[(1, 1)]


def test_persistent_workers_reseed_at_each_epoch():
    """Workers kept across epochs (persistent_workers) draw what fresh workers of that epoch draw."""
    seeds = WorkerSeeds(7, 1)
    loader = DataLoader(EpochSeededDataset(_Draws(), seeds), batch_size=None, num_workers=2,
                        worker_init_fn=seeds, persistent_workers=True)
    by_epoch = []
    for epoch in (0, 1):
        seeds.epoch = epoch  # the trainer's EpochSeeds callback, before the epoch's iterator starts
        by_epoch.append(_draws(loader))
    assert by_epoch == [_epoch_draws(1, 0), _epoch_draws(1, 1)]


class _Epochs(_Draws):
    """Reports the epoch its (worker) copy was told, as data.augment's augmenter is told it."""

    epoch = 0

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __getitem__(self, i):
        return self.epoch, torch.utils.data.get_worker_info().id


def test_persistent_workers_pass_each_epoch_on_to_the_dataset():
    seeds = WorkerSeeds(7, 0)
    loader = DataLoader(EpochSeededDataset(_Epochs(), seeds), batch_size=None, num_workers=2,
                        worker_init_fn=seeds, persistent_workers=True)
    seen = []
    for epoch in (0, 1, 2):
        seeds.epoch = epoch
        seen.append({e for e, _ in loader})
    assert seen == [{0}, {1}, {2}]


def _summary(run) -> dict:
    return json.loads((run / "finetune" / "summary.json").read_text())


def _subset(tiny_data, tmp_path, n: int = 24) -> list[dict]:
    """The first ``n`` training items: divisible by every global batch used here (no padded repeats)."""
    items = json.loads((tiny_data / "train.json").read_text())[:n]
    (tmp_path / "train24.json").write_text(json.dumps(items))
    return items


def _train(tiny_data, out, tmp_path, **data):
    from gemfactory.cli import main

    recipe = tiny_recipe(tiny_data, out, batch_size=6)
    recipe["data"].update(train=str(tmp_path / "train24.json"), **data)
    path = tmp_path / f"{out.name}.yaml"
    path.write_text(yaml.safe_dump(recipe))
    assert main(["train", str(path)]) == 0
    return _summary(out)


@pytest.mark.skipif(sys.platform != "linux", reason="worker processes are forked (Linux)")
def test_ecg_statistics_add_up_over_dataloader_workers(tiny_data, tmp_path):
    """One epoch over the whole set: with 2 workers each record is still counted exactly once."""
    items = _subset(tiny_data, tmp_path)
    inline = _train(tiny_data, tmp_path / "w0", tmp_path, num_workers=0)["loading"]
    workers = _train(tiny_data, tmp_path / "w2", tmp_path, num_workers=2)
    assert workers["dataloader_workers"] == 2
    loading = workers["loading"]
    assert loading == inline
    assert loading["samples_seen"] == len(items) and loading["samples_skipped"] == 0
    assert loading["ecg"]["records"] == sum(1 for item in items if item.get("ecg")) > 0


@pytest.mark.skipif(sys.platform != "linux", reason="worker processes are forked (Linux)")
def test_ecg_statistics_add_up_over_ranks_and_workers(tiny_data, tmp_path):
    """Two DDP processes with 2 workers each (about 40 s): the summary counts every record once."""
    import os
    import subprocess
    from pathlib import Path

    from gemfactory.train.trainer import _free_port

    items = _subset(tiny_data, tmp_path)
    recipe = tiny_recipe(tiny_data, tmp_path / "ddp", batch_size=3)  # 2 x 3: 6 samples a step, 4 steps
    recipe["data"].update(train=str(tmp_path / "train24.json"), num_workers=2)
    path = tmp_path / "ddp.yaml"
    path.write_text(yaml.safe_dump(recipe))
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT")}
    env.update(OMP_NUM_THREADS="1", NPROC="2", MASTER_PORT=str(_free_port()),
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}")
    script = Path(__file__).resolve().parents[1] / "scripts" / "train_torchrun.sh"
    proc = subprocess.run(["bash", str(script), str(path)], capture_output=True, text=True, env=env, timeout=900, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = _summary(tmp_path / "ddp")
    assert summary["world_size"] == 2 and summary["dataloader_workers"] == 2
    loading = summary["loading"]
    assert loading["samples_seen"] == len(items) and loading["samples_skipped"] == 0
    assert loading["ecg"]["records"] == sum(1 for item in items if item.get("ecg")) > 0
    assert "0 records read" not in proc.stderr


def test_the_dataset_passes_the_epoch_to_its_augmenter(tiny_data):
    from types import SimpleNamespace

    from gemfactory.data.dataset import GemDataset

    processor = SimpleNamespace(augment=SimpleNamespace(epoch=0))
    GemDataset(tiny_data / "train.json", processor).set_epoch(3)
    assert processor.augment.epoch == 3
