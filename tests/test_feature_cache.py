"""Frozen-tower feature cache: same features and same training as without it; a changed tower or
changed preprocessing never hits an old entry."""
import copy
import json
import logging

import pytest
import torch
from safetensors import safe_open

from gemfactory.config import recipe_from_dict
from gemfactory.errors import ConfigError
from gemfactory.model.feature_cache import FeatureCache, attach_feature_caches, detach_feature_caches
from gemfactory.train.trainer import train
from gemfactory.train.tuning import check_tuning

from conftest import tiny_recipe


class Counting(torch.nn.Module):
    """Wraps a tower and counts the inputs it is asked to encode."""

    def __init__(self, tower):
        super().__init__()
        self.tower = tower
        self.seen = 0

    def forward(self, x):
        self.seen += len(x)
        return self.tower(x)


@pytest.fixture()
def tower(tiny_built):
    model = copy.deepcopy(tiny_built[2]).float()
    return model, Counting(model.vision_tower), model.config.vision


def _pixels(n, seed=0):
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def test_cached_features_equal_the_tower_and_are_reused_from_disk(tower, tmp_path):
    model, counting, entry = tower
    px = _pixels(3)
    batch = torch.cat([px, px[:1]])  # the same image twice in one batch is encoded once
    cache = FeatureCache(tmp_path, "image", counting, entry)
    with torch.no_grad():
        expected = model.vision_tower(batch)
    assert torch.equal(cache(batch), expected)
    assert counting.seen == 3 and cache.computed == 3 and cache.hits == 1
    assert torch.equal(cache(batch), expected)  # pending, not yet on disk
    assert counting.seen == 3
    cache.flush()
    shards = list(cache.dir.glob("*.safetensors"))
    assert len(shards) == 1 and not list(cache.dir.glob(".*.tmp"))
    with safe_open(shards[0], "pt") as f:
        assert len(list(f.keys())) == 3
    assert json.loads((cache.dir / "tower.json").read_text())["entry"]["name"] == "clip"

    again = FeatureCache(tmp_path, "image", counting, entry)  # a later run over the same folder
    assert again.known_at_start == 3
    assert torch.equal(again(batch.flip(0)), expected.flip(0))
    assert counting.seen == 3 and again.hits == 4 and again.computed == 0


def test_an_unreadable_shard_is_skipped_with_a_warning(tower, tmp_path, caplog):
    model, counting, entry = tower
    px = _pixels(2)
    cache = FeatureCache(tmp_path, "image", counting, entry)
    cache(px)
    cache.flush()
    (cache.dir / "0-1-0.safetensors").write_bytes(b"not a safetensors file")
    with caplog.at_level(logging.WARNING):
        again = FeatureCache(tmp_path, "image", counting, entry)
    assert "ignoring unreadable shard" in caplog.text and "0-1-0.safetensors" in caplog.text
    assert again.known_at_start == 2  # the good shard still counts
    with torch.no_grad():
        assert torch.equal(again(px), model.vision_tower(px))


def test_changed_tower_or_preprocessing_misses(tower, tmp_path):
    model, counting, entry = tower
    px = _pixels(2)
    cache = FeatureCache(tmp_path, "image", counting, entry)
    cache(px)
    cache.flush()
    with torch.no_grad():
        next(model.vision_tower.parameters()).add_(0.01)  # e.g. a stage that trained the tower
    changed = FeatureCache(tmp_path, "image", counting, entry)
    assert changed.dir != cache.dir and changed.known_at_start == 0
    with torch.no_grad():
        assert torch.equal(changed(px), model.vision_tower(px))
    assert changed.computed == 2

    other_options = FeatureCache(tmp_path, "image", counting, {**entry, "options": {"select_layer": -1}})
    assert other_options.dir not in (cache.dir, changed.dir)

    renormalised = px * 0.5 + 0.1  # the same images through another normalisation
    before = changed.computed
    changed(renormalised)
    assert changed.computed == before + 2


def test_a_stochastic_tower_gets_no_cache(tower, tmp_path, caplog):
    model, _, _ = tower
    model.vision_tower.register_forward_hook(lambda m, i, out: torch.nn.functional.dropout(out, 0.5, m.training))
    with caplog.at_level(logging.WARNING):
        caches = attach_feature_caches(model, {"vision": "frozen", "ecg": "frozen"}, tmp_path)
    assert [c.modality for c in caches] == ["ecg"]
    assert "image" not in model.feature_caches and "dropout" in caplog.text
    detach_feature_caches(model)
    assert model.feature_caches == {}


def test_zero3_is_refused(tiny_data, tmp_path):
    raw = tiny_recipe(tiny_data, tmp_path)
    raw["data"]["feature_cache"] = True
    with pytest.raises(ConfigError, match="data.feature_cache: cannot be used with ZeRO-3"):
        check_tuning(recipe_from_dict(raw), zero_stage=3)


def _train(tiny_data, out, cache_dir=None):
    raw = tiny_recipe(tiny_data, out, epochs=2, tune={"llm": "frozen", "vision": "frozen", "ecg": "frozen"})
    if cache_dir is not None:
        raw["data"].update(feature_cache=True, feature_cache_dir=str(cache_dir))
    raw["training"]["report_to"] = []
    torch.manual_seed(0)
    final = train(recipe_from_dict(raw))
    rows = [json.loads(line) for line in (out / "finetune" / "metrics.jsonl").read_text().splitlines()]
    losses = [(r["step"], r["loss"], r["grad_norm"]) for r in rows if "loss" in r]
    weights = {}
    from safetensors.torch import load_file
    for f in sorted(final.glob("*.safetensors")):
        weights.update(load_file(f))
    return losses, weights


def test_training_with_the_cache_equals_training_without(tiny_data, tmp_path):
    """Stage-1 style (towers frozen, connectors trained), 2 epochs: the cold cache fills in
    epoch 1 and serves epoch 2; a second run starts warm. Losses and weights match the run
    without a cache."""
    plain_losses, plain_weights = _train(tiny_data, tmp_path / "plain")
    cache_dir = tmp_path / "features"
    written = {}
    for run in ("cold", "warm"):
        losses, weights = _train(tiny_data, tmp_path / run, cache_dir)
        assert [s for s, _, _ in losses] == [s for s, _, _ in plain_losses]
        for (_, a, ga), (_, b, gb) in zip(plain_losses, losses):
            assert a == pytest.approx(b, abs=1e-6) and ga == pytest.approx(gb, rel=1e-5, abs=1e-6)
        assert weights.keys() == plain_weights.keys()
        for name in weights:
            torch.testing.assert_close(weights[name], plain_weights[name], atol=1e-6, rtol=1e-5, msg=name)
        shards = {p.parent.name: p for p in cache_dir.rglob("*.safetensors")}
        assert {k.split("-")[0] for k in shards} == {"image", "ecg"}
        written[run] = sorted(cache_dir.rglob("*.safetensors"))
    assert written["warm"] == written["cold"]  # the warm run found every feature and wrote nothing
