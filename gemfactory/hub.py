"""Recipe paths that are local files/folders or Hugging Face hub references, resolved to local paths.

A reference is ``ORG/NAME`` with an optional ``@REVISION`` (branch, tag or commit) and, for a
single-file checkpoint, ``:FILE`` (a path inside the repository)::

    lmsys/vicuna-7b-v1.5                 the repository's main branch
    openai/clip-vit-large-patch14-336@main
    org/ecg-encoders@v1.0:ecg_coca.pt    one file at tag v1.0

An existing local path always wins. References go through huggingface_hub and its cache (HF_HOME,
HF_HUB_CACHE, HF_HUB_OFFLINE and the token as huggingface_hub reads them). Nothing is fetched without
a log line naming it; offline, a reference missing from the cache is one ``HubMissing`` error naming
the repository, the revision and the command that downloads it. Planning (``memory``, ``--dry-run``,
``recipe check``) needs only config and tokenizer files, and falls back to the architecture configs
shipped in ``gemfactory/known_configs`` (see there for each file's source and licence).
"""
from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError, GemError

log = logging.getLogger(__name__)

KNOWN_CONFIGS = Path(__file__).parent / "known_configs"
_REF = re.compile(r"^(?P<repo>[A-Za-z0-9][\w.-]*/[\w.-]+)(?:@(?P<rev>[^:@\s]+))?(?::(?P<file>[^:\s]+))?$")

#: files planning needs: model/preprocessor configs and every tokenizer format transformers reads
CONFIG_PATTERNS = ["config.json", "generation_config.json", "preprocessor_config.json", "tokenizer*",
                   "special_tokens_map.json", "added_tokens.json", "vocab.*", "merges.txt", "*.model",
                   "*.tiktoken", "chat_template*", "processor_config.json", "open_clip_config.json"]
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
_NOT_FOR_TORCH = ["*.msgpack", "*.h5", "*.ot", "*.onnx", "*.tflite", "*.gguf", "*.mlmodel", "coreml/*"]


class HubMissing(GemError):
    """A hub reference that is not in the cache while offline (or cannot be downloaded)."""


@dataclass(frozen=True)
class HubRef:
    repo_id: str
    revision: str | None = None
    filename: str | None = None

    @property
    def rev(self) -> str:
        return self.revision or "main"

    def __str__(self) -> str:
        return self.repo_id + (f"@{self.revision}" if self.revision else "") + \
            (f":{self.filename}" if self.filename else "")


def parse_ref(value: str) -> HubRef | None:
    """The hub reference ``value`` spells, or None when it is not one (``./x``, ``/abs``, ``a/b/c``)."""
    m = _REF.match(value or "")
    if not m or value.startswith((".", "~")) or ".." in m["repo"] or m["repo"].endswith((".", "-")):
        return None
    if not m["file"] and m["repo"].endswith(WEIGHT_SUFFIXES):  # models/x.pt: a local file, not a repo
        return None
    return HubRef(m["repo"], m["rev"], m["file"])


def is_hub_ref(value: str | None) -> bool:
    """True when ``value`` names a hub repository rather than an existing local path."""
    return bool(value) and not Path(value).expanduser().exists() and parse_ref(value) is not None


def cache_dir() -> str:
    """The hub cache huggingface_hub uses, read now (tests and users change the variables)."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    if os.environ.get("HF_HOME"):
        return os.path.join(os.environ["HF_HOME"], "hub")
    from huggingface_hub import constants

    return constants.HF_HUB_CACHE


def offline() -> bool:
    flag = os.environ.get("HF_HUB_OFFLINE")
    if flag is not None:
        return flag.strip().lower() in ("1", "true", "yes", "on")
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def _reference(value: str, key: str) -> HubRef | None:
    """None for an existing local path; the reference otherwise; an error for neither."""
    if Path(value).expanduser().exists():
        return None
    ref = parse_ref(value)
    if ref is None:
        raise ConfigError(f"{key}: {value!r} does not exist, and it is not a Hugging Face repo id either "
                          f"(ORG/NAME, optionally @REVISION and :FILE inside the repo)")
    return ref


def _missing(ref: HubRef, key: str, origin: str | None, what: str) -> HubMissing:
    recipe = origin or "RECIPE"
    return HubMissing(
        f"{key}: {str(ref)!r} is no local path, and Hugging Face repo {ref.repo_id} (revision {ref.rev}) has "
        f"no {what} in the cache {cache_dir()} while HF_HUB_OFFLINE is set; download it with: "
        f"gemfactory download {recipe}"
    )


def cached_snapshot(ref: HubRef) -> Path | None:
    """The cached snapshot folder of ``ref``'s revision (refs/ or a commit hash), or None."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(ref.repo_id, revision=ref.revision, cache_dir=cache_dir(),
                                      local_files_only=True))
    except LocalEntryNotFoundError:
        return None


def has_config(folder: Path) -> bool:
    return (folder / "config.json").is_file() or (folder / "open_clip_config.json").is_file()


def has_tokenizer(folder: Path) -> bool:
    return any((folder / name).is_file() for name in TOKENIZER_FILES)


def has_weights(folder: Path) -> bool:
    """Every shard a weight index lists, or at least one weight file when there is no index."""
    for index in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        if (folder / index).is_file():
            shards = set(json.loads((folder / index).read_text())["weight_map"].values())
            return all((folder / s).is_file() for s in shards)
    return any(f.suffix in WEIGHT_SUFFIXES for f in folder.iterdir() if f.is_file())


def _fetch_folder(ref: HubRef, config_only: bool) -> Path:
    from huggingface_hub import HfApi, snapshot_download

    ignore = list(_NOT_FOR_TORCH)
    if not config_only:
        files = HfApi().list_repo_files(ref.repo_id, revision=ref.revision)
        if any(f.endswith(".safetensors") for f in files):  # the same weights twice: keep safetensors
            ignore += ["*.bin", "*.pt", "*.pth"]
    what = "config and tokenizer files" if config_only else "all files"
    log.info("hub: downloading %s of %s@%s into %s", what, ref.repo_id, ref.rev, cache_dir())
    return Path(snapshot_download(ref.repo_id, revision=ref.revision, cache_dir=cache_dir(),
                                  allow_patterns=CONFIG_PATTERNS if config_only else None,
                                  ignore_patterns=ignore))


def _fetch_file(ref: HubRef) -> Path:
    from huggingface_hub import hf_hub_download

    log.info("hub: downloading %s from %s@%s into %s", ref.filename, ref.repo_id, ref.rev, cache_dir())
    return Path(hf_hub_download(ref.repo_id, ref.filename, revision=ref.revision, cache_dir=cache_dir()))


def _download(fetch, ref: HubRef, key: str, origin: str | None, what: str) -> Path:
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, OfflineModeIsEnabled

    if offline():
        raise _missing(ref, key, origin, what)
    try:
        return fetch()
    except OfflineModeIsEnabled:
        raise _missing(ref, key, origin, what) from None
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError) as exc:  # no connection, no repo, gated
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise HubMissing(f"{key}: cannot download {ref} (revision {ref.rev}): {first}") from None


def resolve(value: str, key: str, need: str = "weights", origin: str | None = None) -> str:
    """A local path for ``value``: itself when it exists, else the cached (or, online, downloaded
    with a log line) hub snapshot folder / file. ``need`` is ``weights``, ``config`` or ``tokenizer``:
    what the folder must hold. ``origin`` names the recipe in the error's download command."""
    ref = _reference(value, key)
    if ref is None:
        return value
    if ref.filename:
        from huggingface_hub import try_to_load_from_cache

        hit = try_to_load_from_cache(ref.repo_id, ref.filename, cache_dir=cache_dir(), revision=ref.revision)
        if isinstance(hit, str):
            return hit
        return str(_download(lambda: _fetch_file(ref), ref, key, origin, f"file {ref.filename}"))
    wanted = {"weights": has_weights, "config": has_config, "tokenizer": has_tokenizer}[need]
    snapshot = cached_snapshot(ref)
    if snapshot is not None and wanted(snapshot) and (need != "weights" or has_config(snapshot)):
        return str(snapshot)
    what = {"weights": "weights", "config": "config.json", "tokenizer": "tokenizer files"}[need]
    return str(_download(lambda: _fetch_folder(ref, config_only=need != "weights"), ref, key, origin, what))


def known_config(value: str | None) -> Path | None:
    """The architecture config gemfactory ships for the repository ``value`` names, if any."""
    ref = parse_ref(value or "")
    if ref is None:
        return None
    folder = KNOWN_CONFIGS / ref.repo_id.replace("/", "--")
    return folder if (folder / "config.json").is_file() else None


def known_provenance(folder: Path) -> dict:
    """Source repository, licence and tokenizer facts recorded beside a shipped config."""
    return json.loads((folder / "provenance.json").read_text())


def planning_source(value: str, key: str, need: str, origin: str | None = None) -> tuple[str | None, str]:
    """Where planning reads ``value``'s config or tokenizer: (local path or None, a note).

    Order: the local path or cached snapshot; online, a config-only download; offline, the config
    shipped with gemfactory (``need='config'``). None with a note when nothing can stand in."""
    ref = _reference(value, key)
    if ref is None:
        return value, ""
    try:
        return resolve(value, key, need, origin), ""
    except HubMissing as missing:
        shipped = known_config(value) if need == "config" and not ref.filename else None
        if shipped is not None:
            return str(shipped), (f"{key}: {ref.repo_id} is not cached; planning with the config shipped "
                                  f"in gemfactory ({shipped.name}/config.json)")
        if need == "tokenizer":
            return None, f"{missing}"
        raise


def fetch(value: str, key: str, config_only: bool = False) -> Path:
    """Download ``value``'s repository (config and tokenizer files only with ``config_only``) or
    its one file into the cache, with huggingface_hub's progress bars; the local path."""
    ref = _reference(value, key)
    if ref is None:
        return Path(value)
    if ref.filename:
        return _download(lambda: _fetch_file(ref), ref, key, None, f"file {ref.filename}")
    return _download(lambda: _fetch_folder(ref, config_only), ref, key, None, "files")


__all__ = ["HubRef", "HubMissing", "parse_ref", "is_hub_ref", "resolve", "planning_source",
           "known_config", "known_provenance", "cached_snapshot", "cache_dir", "offline",
           "fetch", "CONFIG_PATTERNS"]
