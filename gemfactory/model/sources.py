"""The recipe's model paths as local paths: hub references resolved (``gemfactory.hub``).

Training resolves everything (weights included); planning (``memory``, ``--dry-run``, ``recipe
check``) resolves configs and tokenizers only, with gemfactory's shipped architecture configs
standing in for repositories that are not cached, and a vocabulary-only tokenizer standing in for
a tokenizer that is not cached (said in a warning).
"""
from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

from .. import hub
from ..config import ModelConfig
from ..errors import ConfigError
from ..template.base import ECG_TOKEN, IMAGE_TOKEN

log = logging.getLogger(__name__)


def model_paths(cfg: ModelConfig) -> dict[str, str]:
    """Recipe key -> value of every path the model section names."""
    paths = {"model.llm.path": cfg.llm.path, "model.llm.tokenizer": cfg.llm.tokenizer}
    if cfg.vision is not None:
        paths["model.vision.path"] = cfg.vision.path
    if cfg.ecg is not None:
        paths["model.ecg.path"] = cfg.ecg.path
    for name, conn in cfg.connectors.items():
        paths[f"model.connectors.{name}.path"] = conn.path
    return {k: v for k, v in paths.items() if v}


def hub_refs(cfg: ModelConfig) -> dict[str, str]:
    """The paths that are hub references (not existing local paths)."""
    return {k: v for k, v in model_paths(cfg).items() if hub.is_hub_ref(v)}


def _replace(cfg: ModelConfig, key: str, value: str | None) -> ModelConfig:
    parts = key.split(".")[1:]  # model.llm.path -> ("llm", "path")
    if parts[0] == "connectors":
        conns = dict(cfg.connectors)
        conns[parts[1]] = dataclasses.replace(conns[parts[1]], path=value)
        return dataclasses.replace(cfg, connectors=conns)
    section = dataclasses.replace(getattr(cfg, parts[0]), **{parts[1]: value})
    return dataclasses.replace(cfg, **{parts[0]: section})


def local_model_config(cfg: ModelConfig, origin: str | None = None) -> ModelConfig:
    """``cfg`` with every hub reference replaced by its cached (or, online, downloaded) local path;
    a path that neither exists nor reads as a repo id is an error naming its key."""
    for key, value in model_paths(cfg).items():
        need = "tokenizer" if key == "model.llm.tokenizer" else "weights"
        cfg = _replace(cfg, key, hub.resolve(value, key, need, origin))
    return cfg


def weights_missing(cfg: ModelConfig) -> list[str]:
    """Keys whose hub weights are not cached (building the model would need a download)."""
    missing = []
    for key, value in hub_refs(cfg).items():
        if key == "model.llm.tokenizer":
            continue
        ref = hub.parse_ref(value)
        if ref.filename:
            from huggingface_hub import try_to_load_from_cache

            hit = try_to_load_from_cache(ref.repo_id, ref.filename, cache_dir=hub.cache_dir(), revision=ref.revision)
            ok = isinstance(hit, str)
        else:
            snap = hub.cached_snapshot(ref)
            ok = snap is not None and hub.has_config(snap) and hub.has_weights(snap)
        if not ok:
            missing.append(key)
    return missing


def planning_model_config(cfg: ModelConfig, origin: str | None = None) -> ModelConfig:
    """``cfg`` with hub references replaced by folders holding their configs (cached, downloaded
    config-only when online, or shipped with gemfactory); weight files that are not cached become
    None (no tower reads its architecture from a single weight file)."""
    llm = cfg.llm
    if llm.config and llm.path and not Path(llm.path).expanduser().exists() and not _cached(llm.path):
        local, note = hub.planning_source(llm.config, "model.llm.config", "config", origin)
        log.warning("model.llm.path: %s does not exist yet; planning with the config of model.llm.config "
                    "(%s)%s", llm.path, llm.config, f"; {note}" if note else "")
        cfg = _replace(cfg, "model.llm.path", local)
    for key, value in hub_refs(cfg).items():
        if key == "model.llm.tokenizer":
            continue  # planning_tokenizer handles it
        if hub.parse_ref(value).filename or key.startswith("model.connectors."):
            try:
                local = hub.resolve(value, key, "weights", origin)
            except hub.HubMissing:
                local = None
        else:
            local, note = hub.planning_source(value, key, "config", origin)
            if note:
                log.warning(note)
        cfg = _replace(cfg, key, local)
    return cfg


def _cached(value: str) -> bool:
    ref = hub.parse_ref(value)
    return ref is not None and (snap := hub.cached_snapshot(ref)) is not None and hub.has_config(snap)


class VocabOnlyTokenizer:
    """Stands in for a tokenizer that is not cached, while planning: it knows the vocabulary size
    and the placeholder ids, nothing else (it cannot encode text)."""

    vocab_only = True

    def __init__(self, base_length: int, source: str):
        self.base_length = base_length
        self.source = source
        self._ids = {IMAGE_TOKEN: base_length, ECG_TOKEN: base_length + 1}
        self.pad_token_id = self.bos_token_id = self.eos_token_id = 0

    def __len__(self) -> int:
        return self.base_length + len(self._ids)

    def convert_tokens_to_ids(self, token: str) -> int:
        return self._ids[token]


def planning_tokenizer(cfg: ModelConfig, origin: str | None = None):
    """The recipe's tokenizer folder if cached (or fetched config-only online), else a
    ``VocabOnlyTokenizer`` (None when the recipe names no tokenizer: a tiny one is trained)."""
    key = "model.llm.tokenizer" if cfg.llm.tokenizer else "model.llm.path"
    source = cfg.llm.tokenizer or cfg.llm.path
    if not source or not hub.is_hub_ref(source):
        return None
    local, note = hub.planning_source(source, key, "tokenizer", origin)
    if local is not None:
        return local
    length, where = _vocab_length(cfg, source, origin)
    log.warning("%s: no tokenizer of %s is cached; planning counts %d vocabulary rows (%s) and cannot "
                "count the data's tokens (gemfactory download %s --config-only fetches the tokenizer)",
                key, source, length, where, origin or "RECIPE")
    return VocabOnlyTokenizer(length, source)


def _vocab_length(cfg: ModelConfig, source: str, origin: str | None) -> tuple[int, str]:
    shipped = hub.known_config(source)
    if shipped is not None:
        facts = hub.known_provenance(shipped).get("tokenizer", {})
        if "length" in facts:
            return int(facts["length"]), f"the tokenizer length recorded in known_configs/{shipped.name}"
    arch_source = cfg.llm.config if cfg.llm.config and not Path(cfg.llm.path or "").exists() else cfg.llm.path
    folder, _ = hub.planning_source(arch_source, "model.llm.path", "config", origin) if arch_source else (None, "")
    vocab = json.loads((Path(folder) / "config.json").read_text()).get("vocab_size") if folder else None
    if not vocab:
        raise ConfigError(f"model.llm.tokenizer: {source} is not cached and no config gives its vocabulary size; "
                          f"fetch it with: gemfactory download {origin or 'RECIPE'} --config-only")
    return int(vocab), "vocab_size of the LLM's config"


__all__ = ["model_paths", "hub_refs", "local_model_config", "weights_missing", "planning_model_config",
           "planning_tokenizer", "VocabOnlyTokenizer"]
