"""The feature cache's folder on disk: what it holds, and keeping it under a size cap.

A cache folder (``data.feature_cache_dir``) holds one sub-folder per tower fingerprint
(``<modality>-<fingerprint>/``, with its ``tower.json``), each with safetensors shards. A shard's
modification time is its last use: :class:`~gemfactory.model.feature_cache.FeatureCache` sets it
when it writes a shard and the first time a run reads from it, so eviction is least recently used
first, shard by shard (a folder whose last shard goes is removed with it). Used by training
(``data.feature_cache_max_gb``) and by ``gemfactory cache ls|prune``.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import DataError

GB = 1e9
SHARD_GLOB = "*.safetensors"


@dataclass
class TowerFolder:
    path: Path
    modality: str
    tower: str  # the component name from tower.json, "?" when unreadable
    shards: list[Path]
    bytes: int
    last_used: float  # newest shard mtime (the folder's own when it has none)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:  # evicted by another process meanwhile
        return 0


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return 0.0


def tower_folders(root: str | Path) -> list[TowerFolder]:
    """Every tower folder of a cache folder, most recently used first."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"feature cache folder not found: {root}")
    out = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and (p / "tower.json").exists()):
        try:
            tower = json.loads((folder / "tower.json").read_text()).get("entry", {}).get("name", "?")
        except (OSError, ValueError, AttributeError):
            tower = "?"
        shards = sorted(folder.glob(SHARD_GLOB))
        times = [_mtime(s) for s in shards] or [_mtime(folder)]
        out.append(TowerFolder(folder, folder.name.split("-")[0], tower, shards, sum(_size(s) for s in shards),
                               max(times)))
    return sorted(out, key=lambda f: -f.last_used)


def _remove_shard(shard: Path, removed: list[Path]) -> None:
    try:
        shard.unlink()
    except FileNotFoundError:
        return
    removed.append(shard)
    folder = shard.parent
    if not any(folder.glob(SHARD_GLOB)):
        shutil.rmtree(folder, ignore_errors=True)


def prune(root: str | Path, older_than_days: float | None = None, max_bytes: float | None = None,
          dry_run: bool = False) -> list[Path]:
    """Remove shards last used more than ``older_than_days`` ago, then the least recently used ones
    until the folder holds at most ``max_bytes``; returns the shards removed (or that would be)."""
    folders = tower_folders(root)
    shards = sorted(((s, _mtime(s), _size(s)) for f in folders for s in f.shards), key=lambda x: x[1])
    total = sum(size for _, _, size in shards)
    cutoff = time.time() - older_than_days * 86400 if older_than_days is not None else None
    doomed = []
    for shard, used, size in shards:  # oldest first
        if (cutoff is not None and used < cutoff) or (max_bytes is not None and total > max_bytes):
            doomed.append(shard)
            total -= size
    if dry_run:
        return doomed
    removed: list[Path] = []
    for shard in doomed:
        _remove_shard(shard, removed)
    for folder in folders:  # tower folders that never got a shard, left by old runs
        if not folder.shards and cutoff is not None and folder.last_used < cutoff:
            shutil.rmtree(folder.path, ignore_errors=True)
    return removed


def touch(path: Path) -> None:
    """Mark a shard as used now (its place in the LRU order)."""
    try:
        os.utime(path)
    except OSError:  # read-only cache folders still serve features
        pass
