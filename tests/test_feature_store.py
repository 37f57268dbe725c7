"""Feature cache hygiene: a size cap with least-recently-used eviction, invalidation when the
tower's code or weights change, and `gemfactory cache ls|prune`."""
import copy
import os
import time

import pytest
import torch

from gemfactory.cli import main
from gemfactory.config import recipe_from_dict
from gemfactory.errors import ConfigError
from gemfactory.model import feature_cache
from gemfactory.model.feature_cache import FeatureCache, tower_fingerprint
from gemfactory.model.feature_store import GB, prune, tower_folders

from conftest import tiny_recipe


@pytest.fixture()
def tower(tiny_built):
    model = copy.deepcopy(tiny_built[2]).float()
    return model.vision_tower, model.config.vision


def _pixels(n, seed):
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def _fill(cache, seeds):
    """One shard per seed; returns the shard paths in write order."""
    for seed in seeds:
        cache(_pixels(2, seed))
        cache.flush()
    return sorted(cache.dir.glob("*.safetensors"), key=os.path.getmtime)


def _age(path, days):
    t = time.time() - days * 86400
    os.utime(path, (t, t))


def test_cap_evicts_least_recently_used_shards(tower, tmp_path):
    vision, entry = tower
    cache = FeatureCache(tmp_path, "image", vision, entry)
    shards = _fill(cache, range(4))
    size = shards[0].stat().st_size
    for k, shard in enumerate(shards):  # written 4, 3, 2, 1 days ago
        _age(shard, 4 - k)
    reader = FeatureCache(tmp_path, "image", vision, entry)
    reader(_pixels(2, 0))  # reading the oldest shard makes it the most recently used
    assert shards[0].stat().st_mtime > time.time() - 60
    capped = FeatureCache(tmp_path, "image", vision, entry, max_gb=2.5 * size / GB)  # room for 2 shards
    left = set(capped.dir.glob("*.safetensors"))
    assert left == {shards[0], shards[3]}  # shards 1 and 2 were the least recently used
    assert capped.known_at_start == 4  # the two survivors' features
    capped(_pixels(2, 9))
    capped.flush()  # a third shard: the oldest of the others goes, the new one stays
    left = set(capped.dir.glob("*.safetensors"))
    assert len(left) == 2 and shards[3] not in left and shards[0] in left
    assert all(path in left for path in capped.index.values())  # no stale index entries
    features = capped(_pixels(2, 3))  # evicted: computed again, equal to the tower's output
    with torch.no_grad():
        assert torch.equal(features, vision(_pixels(2, 3)))


def test_own_folder_evicted_whole_is_recreated(tower, tmp_path):
    vision, entry = tower
    cache = FeatureCache(tmp_path, "image", vision, entry, max_gb=1e-12)
    cache(_pixels(2, 0))
    cache.flush()  # over the cap at once: the shard and its folder go
    assert not cache.dir.exists() and cache.index == {}
    cache.max_bytes = GB
    cache(_pixels(2, 1))
    cache.flush()  # the folder comes back
    assert (cache.dir / "tower.json").exists() and len(cache.index) == 2


def test_fingerprint_follows_code_and_weights(tower, monkeypatch):
    vision, entry = tower
    base = tower_fingerprint(vision, entry)
    changed = copy.deepcopy(vision)
    with torch.no_grad():
        next(changed.parameters()).add_(1e-3)
    assert tower_fingerprint(changed, entry) != base
    monkeypatch.setattr(feature_cache, "_code_identity", lambda cls: "edited source")
    assert tower_fingerprint(vision, entry) != base
    monkeypatch.undo()
    ident = feature_cache._code_identity(type(vision))
    monkeypatch.setattr(torch, "__version__", "0.0-other")
    assert feature_cache._code_identity(type(vision)) != ident


def test_cache_ls_and_prune_commands(tower, tmp_path, capsys):
    vision, entry = tower
    cache = FeatureCache(tmp_path, "image", vision, entry)
    shards = _fill(cache, range(3))
    _age(shards[0], 10)
    _age(shards[1], 5)
    assert main(["-q", "cache", "ls", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"{cache.dir.name}  image  clip  3 shard(s)" in out and "1 tower folder(s)" in out
    assert main(["-q", "cache", "prune", str(tmp_path), "--older-than", "7", "--dry-run"]) == 0
    assert f"would remove {shards[0]}" in capsys.readouterr().out and shards[0].exists()
    assert main(["-q", "cache", "prune", str(tmp_path), "--older-than", "7"]) == 0
    assert "removed 1 shard(s)" in capsys.readouterr().out and not shards[0].exists()
    assert main(["-q", "cache", "prune", str(tmp_path), "--max-gb", str(shards[2].stat().st_size / GB)]) == 0
    assert not shards[1].exists() and shards[2].exists()
    assert prune(tmp_path, max_bytes=0) == [shards[2]]
    assert tower_folders(tmp_path) == []  # the emptied tower folder went with its last shard
    assert main(["-q", "cache", "prune", str(tmp_path)]) == 2
    assert "give --older-than DAYS and/or --max-gb GB" in capsys.readouterr().err
    assert main(["-q", "cache", "ls", str(tmp_path / "nope")]) == 2
    assert f"feature cache folder not found: {tmp_path / 'nope'}" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["-q", "cache", "prune", str(tmp_path), "--max-gb", "-1"])
    assert "--max-gb: expected a positive float" in capsys.readouterr().err


def test_recipe_key(tiny_data, tmp_path):
    raw = tiny_recipe(tiny_data, tmp_path)
    raw["data"].update(feature_cache=True, feature_cache_max_gb=2)
    assert recipe_from_dict(raw).data.feature_cache_max_gb == 2
    raw["data"]["feature_cache_max_gb"] = 0
    with pytest.raises(ConfigError, match="data.feature_cache_max_gb: expected a positive number of GB, got 0"):
        recipe_from_dict(raw)
