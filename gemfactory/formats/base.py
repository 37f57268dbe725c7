"""The contract of an import format, and the key-mapping machinery the formats share.

A format says whether a folder is its kind (:meth:`SeedFormat.detect`), turns the folder's
config.json into the parts of a :class:`GemConfig` (:meth:`SeedFormat.plan`) and renames the
seed's weight names to gemfactory's with a table of ``(regex, replacement)`` rules: the first
rule whose regex matches a key renames it; a replacement of ``None`` drops a tensor the seed saves
but its forward never reads (each such rule says why). A key no rule matches is an unexpected key.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import CheckpointError, ConfigError
from ..weights import load_state_file

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
#: buffers older transformers versions saved with the weights; recomputed at load, never trained
STALE_BUFFERS = ((r"\.rotary_emb\.inv_freq$", None), (r"\.embeddings\.position_ids$", None))


class FormatError(CheckpointError):
    """A folder that is not the format asked for, or weights that do not fit it."""


class UnsupportedFeature(ConfigError):
    """A seed setting gemfactory has no exact equivalent for."""


@dataclass
class ImportPlan:
    """What a format reads from a seed folder: the GemConfig parts and where the weights are."""

    text_config: object                      # a transformers PreTrainedConfig of the LLM
    llm_family: str                          # gemfactory LLM family (llm/ registry name)
    vision: dict | None = None               # {"name", "arch", "options"} before resolve()
    ecg: dict | None = None                  # {"name", "arch", "signal"}
    connectors: dict = field(default_factory=dict)
    template: str = "vicuna_v1"
    layout: str = "separate"
    image_token_id: int | None = None        # the seed's own placeholder id when its tokenizer has one
    external: dict = field(default_factory=dict)  # prefix -> (file or folder, key rules) for towers saved apart


class SeedFormat:
    """One released layout. Subclasses set ``name``, ``rules`` and implement detect / plan."""

    name = "base"
    summary = ""
    rules: tuple[tuple[str, str | None], ...] = ()

    def detect(self, src: Path, config: dict) -> bool:
        """True when ``src`` (its parsed ``config.json`` given) is a checkpoint of this format."""
        raise NotImplementedError

    def plan(self, src: Path, config: dict, options: dict) -> ImportPlan:
        """The GemConfig parts; raises UnsupportedFeature naming the first setting with no equivalent."""
        raise NotImplementedError

    def read_weights(self, src: Path) -> dict:
        """Every tensor the seed saved, under the names its save code gives them."""
        return load_folder_state(src)

    def map_keys(self, state: dict) -> tuple[dict, dict, list[str]]:
        """(renamed state, {new name: source name}, source keys no rule matches)."""
        return rename(state, (*self.rules, *STALE_BUFFERS))


def load_folder_state(src: Path) -> dict:
    """Every tensor of a HF-style folder: one file or shards listed by ``*.index.json``."""
    for name in WEIGHT_FILES:
        index = src / f"{name}.index.json"
        if index.is_file():
            shards = sorted(set(read_json(index, "the shard index").get("weight_map", {}).values()))
            state = {}
            for shard in shards:
                state.update(load_state_file(str(src / shard), key=str(index)))
            return state
        if (src / name).is_file():
            return load_state_file(str(src / name), key=str(src / name))
    raise FormatError(f"{src}: no weights (expected {' or '.join(WEIGHT_FILES)}, or a sharded index of one)")


def rename(state: dict, rules) -> tuple[dict, dict, list[str]]:
    compiled = [(re.compile(pattern), target) for pattern, target in rules]
    out, origin, unmatched = {}, {}, []
    for key, value in state.items():
        for regex, target in compiled:
            if regex.search(key):
                if target is not None:
                    new = regex.sub(target, key, count=1)
                    out[new], origin[new] = value, key
                break
        else:
            unmatched.append(key)
    return out, origin, unmatched


def read_json(path: Path, what: str) -> dict:
    if not path.is_file():
        raise FormatError(f"{path.parent}: no {path.name} ({what})")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise FormatError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(data, dict):
        raise FormatError(f"{path}: expected a JSON object")
    return data


def refuse(field_name: str, value, why: str):
    raise UnsupportedFeature(f"{field_name} = {value!r}: {why}")


def text_config_from(config: dict, model_type: str, drop_prefixes=("mm_",), drop=()):
    """A transformers config of ``model_type`` from the LLM fields of a seed config.json."""
    from transformers import AutoConfig

    fields = {k: v for k, v in config.items()
              if not k.startswith(tuple(drop_prefixes)) and k not in drop
              and k not in ("model_type", "architectures", "transformers_version", "_name_or_path")}
    try:
        return AutoConfig.for_model(model_type, **fields)
    except (TypeError, ValueError) as exc:
        raise FormatError(f"config.json: the LLM fields do not make a {model_type} config: {exc}") from None


def llm_family_of(model_type: str, hint: str = "") -> str:
    """gemfactory's LLM family for a transformers model_type (Llama checkpoints: Vicuna unless the
    config names Llama-3 / TinyLlama)."""
    hint = hint.lower()
    if model_type == "llama":
        if "llama-3" in hint or "llama3" in hint:
            return "llama3"
        return "tinyllama" if "tinyllama" in hint else "vicuna"
    families = {"phi": "phi", "qwen2": "qwen2", "gemma": "gemma", "stablelm": "stablelm2"}
    if model_type not in families:
        refuse("text model_type", model_type, f"gemfactory has LLM families for {sorted(families) + ['llama']}")
    return families[model_type]


def vision_entry(model_type: str, vision_config: dict, select_layer=None, select_feature="patch",
                 layers=None, image_aspect="pad", processor: dict | None = None) -> dict:
    """A ``vision`` entry for a HF CLIP / SigLIP vision config (a dict as config.json holds it, expanded
    to every field so that no default of gemfactory's tiny twin leaks in)."""
    from transformers import AutoConfig

    names = {"clip_vision_model": "clip", "clip": "clip", "siglip_vision_model": "siglip", "siglip": "siglip"}
    if model_type not in names:
        refuse("vision model_type", model_type, "gemfactory imports CLIP and SigLIP vision towers")
    arch = dict(vision_config.get("vision_config", vision_config))
    hf_type = {"clip": "clip_vision_model", "siglip": "siglip_vision_model"}.get(model_type, model_type)
    arch.pop("model_type", None)
    arch = AutoConfig.for_model(hf_type, **arch).to_dict()
    for key in ("model_type", "architectures", "transformers_version", "_name_or_path", "output_attentions",
                "model_name_or_path", "model_name_or_path2", "dtype", "torch_dtype", "id2label", "label2id",
                "return_dict", "output_hidden_states", "chunk_size_feed_forward", "problem_type",
                "is_encoder_decoder", "tie_word_embeddings"):
        arch.pop(key, None)
    options = {"select_feature": select_feature, "image_aspect": image_aspect}
    if layers is not None:
        options["layers"] = list(layers)
    else:
        options["select_layer"] = select_layer
    for key in ("image_mean", "image_std"):
        if processor and key in processor:
            options[key] = list(processor[key])
    return {"name": names[model_type], "arch": arch, "options": options}


def aspect_from_seed(value, tower: str = "clip") -> str:
    """LLaVA's / TinyLLaVA's ``image_aspect_ratio``: ``pad`` is gemfactory's ``pad``; any other value
    (``square``, GEM's ``ori``) hands the image to the tower's own processor, which for CLIP resizes the
    shortest side and centre-crops (gemfactory's ``crop``) and for SigLIP resizes to the square
    (gemfactory's ``resize``)."""
    if value in ("pad", None):
        return "pad"
    if value == "anyres" or str(value).startswith("anyres"):
        refuse("image_aspect_ratio", value, "LLaVA-NeXT any-resolution tiling is not imported (use pad)")
    return "resize" if tower.startswith("siglip") else "crop"


def projector_entry(projector_type: str, field_name: str) -> dict:
    """LLaVA's projector names (linear, mlpNx_gelu, identity) are gemfactory connector names."""
    if projector_type == "linear" or projector_type == "identity" or re.fullmatch(r"mlp\d+x_gelu", projector_type or ""):
        return {"name": projector_type, "options": {}}
    refuse(field_name, projector_type, "gemfactory has linear, mlpNx_gelu and identity for this projector")


def hf_image_aspect(src: Path) -> dict:
    """``image_aspect`` and mean/std from a transformers folder's preprocessor_config.json: padding to a
    square (``do_pad``, LLaVA-1.5's preprocessing) is ``pad``, resizing the shortest side and then a
    centre crop (CLIP's processor) is ``crop``, one resize to the square is ``resize``."""
    path = src / "preprocessor_config.json"
    if not path.is_file():
        return {"image_aspect": "pad"}
    processor = read_json(path, "the image processor")
    if processor.get("do_pad"):
        aspect = "pad"
    elif processor.get("do_center_crop"):
        aspect = "crop"
    else:
        aspect = "resize"
    return {"image_aspect": aspect, "processor": processor}
