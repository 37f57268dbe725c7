"""Frozen-tower feature cache: a frozen tower's output for an input is computed once and reused.

Features live in safetensors shards under ``<folder>/<modality>-<fingerprint>/``. The fingerprint
hashes everything that decides the tower's output besides the input: its class and the source of
the gemfactory modules defining it, its config entry (architecture, options, signal spec), every
weight (name, dtype, shape, bytes), the device type and the torch / transformers versions. A changed
tower therefore lands in a new folder; the old one is left for whoever switches back, until the size
cap (``data.feature_cache_max_gb``) or ``gemfactory cache prune`` evicts it (model/feature_store.py:
least recently used shards first).
Inside a folder each feature is stored under the hash of the exact tensor the tower receives
(dtype, shape, bytes), so any change of preprocessing (image size, normalisation, resampling,
visual prompts drawn on an image) is a different key, never a stale hit.

Shards are written to a temporary name and renamed into place; a run killed before a flush loses
only features that are recomputed next time. Every process writes its own shards.
"""
from __future__ import annotations

import hashlib
import inspect
import json
import logging
import os
import time
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from ..errors import CheckpointError
from .feature_store import GB, prune, touch

log = logging.getLogger(__name__)

FLUSH_BYTES = 64 * 2**20  # pending features written out once they exceed this


def tensor_digest(t: torch.Tensor, h=None) -> str:
    h = h or hashlib.blake2b(digest_size=20)
    t = t.detach().to("cpu").contiguous()
    h.update(f"{t.dtype}|{tuple(t.shape)}|".encode())
    h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def tower_fingerprint(tower: nn.Module, entry: dict) -> str:
    h = hashlib.blake2b(digest_size=20)
    h.update(f"{type(tower).__module__}.{type(tower).__qualname__}|".encode())
    h.update(json.dumps(entry, sort_keys=True, default=str).encode())
    h.update(_code_identity(type(tower)).encode())
    device = "cpu"
    for name, t in sorted(tower.state_dict().items()):
        h.update(name.encode())
        tensor_digest(t, h)
        device = t.device.type
    h.update(device.encode())
    return h.hexdigest()


def _code_identity(cls: type) -> str:
    """What a code change of the tower would alter: the source files of its gemfactory classes
    (and their bases) and the library versions it runs on."""
    import transformers

    h = hashlib.blake2b(digest_size=20)
    h.update(f"torch {torch.__version__}|transformers {transformers.__version__}|".encode())
    files = set()
    for klass in cls.__mro__:
        if klass.__module__.split(".")[0] == "gemfactory":
            try:
                files.add(inspect.getsourcefile(klass))
            except TypeError:  # built in: nothing to read
                continue
    for name in sorted(f for f in files if f):
        h.update(Path(name).read_bytes())
    return h.hexdigest()


def is_deterministic(tower: nn.Module, example: torch.Tensor) -> bool:
    """Whether the tower gives the same output twice in its current (training) mode, e.g. no
    dropout; the global random state is left as it was, so training randomness is unchanged."""
    devices = [example.device.index or 0] if example.device.type == "cuda" else []
    was_training = tower.training
    tower.train()
    try:
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            return torch.equal(tower(example), tower(example))
    finally:
        tower.train(was_training)


class FeatureCache:
    """Stands in for ``tower(inputs)``: a batch [N, ...] -> features [N, ...] from disk where
    known, from the tower otherwise (those get written)."""

    def __init__(self, folder: str | Path, modality: str, tower: nn.Module, entry: dict,
                 max_gb: float | None = None):
        self.tower = tower
        fingerprint = tower_fingerprint(tower, entry)
        self.root = Path(folder)
        self.max_bytes = max_gb * GB if max_gb else None
        self.dir = self.root / f"{modality}-{fingerprint[:16]}"
        self.modality = modality
        self._about = {"fingerprint": fingerprint, "entry": entry}
        if self.max_bytes is not None:
            prune(self.root, max_bytes=self.max_bytes)
        self._make_folder()
        self.index: dict[str, Path] = {}
        self._open: dict[Path, object] = {}
        for shard in sorted(self.dir.glob("*.safetensors")):
            try:
                with safe_open(shard, "pt") as f:
                    self.index.update(dict.fromkeys(f.keys(), shard))
            except Exception as exc:  # a cache: what cannot be read is recomputed, and said so
                log.warning("feature cache: ignoring unreadable shard %s (%s: %s); its features are recomputed",
                            shard, type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "")
        self.known_at_start = len(self.index)
        self.pending: dict[str, torch.Tensor] = {}
        self.pending_bytes = 0
        self.hits = self.computed = 0
        self._shards_written = 0

    def _make_folder(self) -> None:
        """The tower's folder and its tower.json (again after eviction emptied and removed it)."""
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            about = self.dir / "tower.json"
            if not about.exists():
                tmp = about.with_suffix(f".tmp-{os.getpid()}")
                tmp.write_text(json.dumps(self._about, indent=1, default=str))
                os.replace(tmp, about)
        except OSError as exc:
            raise CheckpointError(f"data.feature_cache_dir: cannot write {self.dir}: {exc.strerror or exc}") from None

    def __call__(self, inputs: torch.Tensor) -> torch.Tensor:
        keys = [tensor_digest(x) for x in inputs.detach().to("cpu")]  # one transfer per batch
        found: dict[str, torch.Tensor] = {}
        missing: dict[str, int] = {}  # key -> first batch index with that input
        for i, key in enumerate(keys):
            if key in found or key in missing:
                continue
            feat = self._lookup(key)
            if feat is None:
                missing[key] = i
            else:
                found[key] = feat
        if missing:
            with torch.no_grad():
                fresh = self.tower(inputs[list(missing.values())])
            for key, feat in zip(missing, fresh):
                found[key] = feat
                self._remember(key, feat)
            self.computed += len(missing)
        self.hits += len(keys) - len(missing)
        device = inputs.device
        return torch.stack([found[k].to(device) for k in keys])

    def _lookup(self, key: str) -> torch.Tensor | None:
        if key in self.pending:
            return self.pending[key]
        shard = self.index.get(key)
        if shard is None:
            return None
        handle = self._open.get(shard)
        if handle is None:
            handle = self._open[shard] = safe_open(shard, "pt")
            touch(shard)  # used now: last in the eviction order
        return handle.get_tensor(key)

    def _remember(self, key: str, feat: torch.Tensor) -> None:
        feat = feat.detach().to("cpu").contiguous().clone()
        self.pending[key] = feat
        self.pending_bytes += feat.numel() * feat.element_size()
        if self.pending_bytes >= FLUSH_BYTES:
            self.flush()

    def flush(self) -> None:
        """Write pending features as one new shard (temp name, then rename)."""
        if not self.pending:
            return
        rank = os.environ.get("RANK", "0")
        name = f"{rank}-{time.time_ns()}-{self._shards_written}.safetensors"
        shard = self.dir / name
        tmp = self.dir / f".{name}.tmp"
        self._make_folder()
        try:
            save_file(self.pending, str(tmp))
            os.replace(tmp, shard)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise CheckpointError(f"feature cache: cannot write {shard}: {exc.strerror or exc}") from None
        self.index.update(dict.fromkeys(self.pending, shard))
        self.pending, self.pending_bytes = {}, 0
        self._shards_written += 1
        if self.max_bytes is not None:
            self._evict()

    def _evict(self) -> None:
        """Keep the whole cache folder under the cap; features of this run's evicted shards are
        computed again when next needed."""
        gone = set(prune(self.root, max_bytes=self.max_bytes))
        if gone:
            log.info("feature cache: %d least recently used shard(s) removed to stay under %.3g GB",
                     len(gone), self.max_bytes / GB)
            self.index = {k: s for k, s in self.index.items() if s not in gone}
            for shard in gone & self._open.keys():
                del self._open[shard]

    def summary(self) -> str:
        return (f"feature cache ({self.modality}): {self.hits} reused, {self.computed} computed, "
                f"{len(self.index) + len(self.pending)} stored in {self.dir}")


TOWERS = {"image": ("vision", "vision_tower"), "ecg": ("ecg", "ecg_encoder")}  # modality -> (component, attribute)


def attach_feature_caches(model, tunes: dict[str, str], folder: str | Path,
                          max_gb: float | None = None) -> list[FeatureCache]:
    """Put a cache in front of every tower the stage keeps frozen (and whose output is
    deterministic in training mode); returns the caches, to flush and report."""
    caches = []
    for modality, (component, attr) in TOWERS.items():
        tower = getattr(model, attr, None)
        if tower is None or tunes.get(component) != "frozen":
            continue
        entry = getattr(model.config, component)
        if not is_deterministic(tower, _example_input(model, modality)):
            log.warning("feature cache: not used for %s: the frozen %s gives different outputs for the same "
                        "input in training mode (dropout?)", modality, entry["name"])
            continue
        cache = model.feature_caches[modality] = FeatureCache(folder, modality, tower, entry, max_gb)
        log.info("feature cache (%s): %s, %d features from earlier runs", modality, cache.dir, cache.known_at_start)
        caches.append(cache)
    return caches


def detach_feature_caches(model) -> None:
    for cache in model.feature_caches.values():
        cache.flush()
        log.info("%s", cache.summary())
    model.feature_caches.clear()


def _example_input(model, modality: str) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    if modality == "image":
        tower = model.vision_tower
        shape = (2, 3, tower.image_size, tower.image_size)
    else:
        tower = model.ecg_encoder
        shape = (2, len(tower.signal_spec.leads), tower.signal_spec.n_samples)
    param = next(tower.parameters(), None)
    dtype, device = (param.dtype, param.device) if param is not None else (torch.float32, "cpu")
    return torch.randn(shape, generator=gen).to(device=device, dtype=dtype)
