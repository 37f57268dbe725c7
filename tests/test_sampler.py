"""data.group_by: GroupedSampler order is deterministic, complete and grouped by modality."""
import json
import random

import pytest
from torch.utils.data import BatchSampler

from gemfactory.data.sampler import GroupedSampler, item_lengths, item_modality

from conftest import tiny_recipe


def _data(n=203, seed=0):
    rng = random.Random(seed)
    mods = [rng.choice(["text", "ecg", "image", "ecg+image"]) for _ in range(n)]
    lengths = [int(rng.paretovariate(1.5) * 40) for _ in range(n)]  # long-tailed
    return lengths, mods


def test_same_seed_and_epoch_same_order_every_index_once():
    lengths, mods = _data()
    s = GroupedSampler(lengths, mods, batch_size=4, world_size=2, seed=3)
    s.set_epoch(1)
    first = list(s)
    again = GroupedSampler(lengths, mods, batch_size=4, world_size=2, seed=3)
    again.set_epoch(1)
    assert list(again) == first  # resume: the order is a function of seed + epoch
    assert sorted(first) == list(range(len(lengths)))
    s.set_epoch(2)
    assert list(s) != first and sorted(s) == list(range(len(lengths)))
    assert GroupedSampler(lengths, mods, 4, 2, seed=4).order(1) != first


def test_global_batches_are_homogeneous_in_modality_when_possible():
    lengths, mods = _data()
    order = GroupedSampler(lengths, mods, batch_size=4, world_size=2, seed=0).order(0)
    batches = [order[b:b + 8] for b in range(0, len(order), 8)]
    mixed = [b for b in batches if len({mods[i] for i in b}) > 1]
    # only the groups' remainders (< one global batch each, 4 groups) can share batches
    assert len(mixed) <= 4
    homogeneous = len(batches) - len(mixed)
    assert homogeneous >= len(lengths) // 8 - 4


def test_length_grouping_reduces_padding():
    lengths, _ = _data()
    order = GroupedSampler(lengths, None, batch_size=8, seed=0).order(0)
    rng = random.Random(0)
    shuffled = list(range(len(lengths)))
    rng.shuffle(shuffled)

    def padded(o):
        return sum(max(lengths[i] for i in o[b:b + 8]) * len(o[b:b + 8]) for b in range(0, len(o), 8))

    assert padded(order) < padded(shuffled)


def test_each_rank_gets_its_shard_of_every_global_batch():
    from accelerate.data_loader import BatchSamplerShard

    lengths, mods = _data(n=200)
    sampler = GroupedSampler(lengths, mods, batch_size=4, world_size=2, seed=0)
    per_rank = []
    for rank in range(2):
        shard = BatchSamplerShard(BatchSampler(sampler, 4, drop_last=False), num_processes=2, process_index=rank)
        per_rank.append(list(shard))
    assert len(per_rank[0]) == len(per_rank[1])
    seen = [i for batches in per_rank for b in batches for i in b]
    assert set(seen) == set(range(200))
    order = sampler.order(0)
    for step, (a, b) in enumerate(zip(*per_rank)):
        assert a + b == order[step * 8:step * 8 + 8] or step * 8 + 8 > len(order)
    same = sum(len({mods[i] for i in a + b}) == 1 for a, b in zip(*per_rank))
    assert same >= len(per_rank[0]) - 4


def test_item_lengths_and_modalities(tiny_built):
    recipe, tok, model, _ = tiny_built
    items = json.load(open(recipe.data.train))
    lengths = item_lengths(items, tok, model.modality_tokens())
    assert all(n > 0 for n in lengths)
    mods = {item_modality(i) for i in items}
    assert mods == {"text", "ecg", "image", "ecg+image"}


def test_training_with_packing_and_grouping(tiny_data, tmp_path, monkeypatch):
    import torch

    from gemfactory.config import recipe_from_dict
    from gemfactory.model import packed_attention
    from gemfactory.train.trainer import train

    calls = []
    real_lengths = packed_attention._segment_lengths  # the per-sample path of the sdpa_packed kernel
    monkeypatch.setattr(packed_attention, "_segment_lengths", lambda *a: calls.append(1) or real_lengths(*a))
    raw = tiny_recipe(tiny_data, tmp_path / "run", max_steps=3)
    raw["data"].update(packing=True, pack_tokens=600, group_by="modality_length")
    raw["training"]["report_to"] = []
    torch.manual_seed(0)
    out = train(recipe_from_dict(raw))
    assert (out / "config.json").is_file()
    records = [json.loads(line) for line in (out.parent / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if "loss" in r]
    assert len(losses) == 3 and all(0 < x < 100 for x in losses)
    assert calls  # the packed rows were attended per sample
    assert "sdpa_packed" not in (out / "config.json").read_text()


def test_trainer_uses_grouped_sampler(tiny_built, tmp_path):
    from transformers import TrainingArguments

    from gemfactory.data.dataset import GemDataset
    from gemfactory.data.processor import Processor
    from gemfactory.train.trainer import GemTrainer, grouping

    recipe, tok, model, template = tiny_built
    proc = Processor.from_model(model, tok, template, 256)
    ds = GemDataset(recipe.data.train, proc, recipe.data.image_folder, recipe.data.ecg_folder)
    args = TrainingArguments(str(tmp_path), per_device_train_batch_size=4, use_cpu=True, report_to="none",
                             seed=5, data_seed=5)
    trainer = GemTrainer(model=model, args=args, train_dataset=ds, **grouping("modality_length", ds, tok, proc))
    sampler = trainer._get_train_sampler()
    assert isinstance(sampler, GroupedSampler) and sampler.seed == 5 and sampler.global_batch == 4
    assert sorted(sampler) == list(range(len(ds)))
    plain = GemTrainer(model=model, args=args, train_dataset=ds, **grouping("none", ds, tok, proc))
    assert not isinstance(plain._get_train_sampler(), GroupedSampler)


@pytest.mark.parametrize("bad", [{"pack_tokens": 0, "packing": True}, {"group_by": "length_modality"}])
def test_bad_settings_one_line_errors(tiny_data, tmp_path, bad):
    from gemfactory.config import recipe_from_dict
    from gemfactory.errors import ConfigError

    raw = tiny_recipe(tiny_data, tmp_path)
    raw["data"].update(bad)
    with pytest.raises(ConfigError) as exc:
        recipe_from_dict(raw)
    assert "\n" not in str(exc.value) and "data." in str(exc.value)
