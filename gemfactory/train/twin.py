"""Tiny twins of recipes: every architecture choice of a recipe, at test size, with no weights.

:func:`shrink` keeps what makes a recipe *this* model -- LLM family, vision tower, ECG encoder,
connectors, template, layout, the layers a tower is read at (``select_layer`` / ``layers`` /
``select_feature``), the stage list and each stage's tune types -- and replaces what only makes it
big. Each component declares its own twin (``LLMFamily.tiny_arch_for``, ``VisionTower.tiny_arch_for``,
``ECGEncoder.tiny_entry``, ``Connector.tiny_options``); here the recipe around them shrinks: weight
and tokenizer paths are dropped (a trained byte-level BPE stands in for the tokenizer), the data
becomes a synthetic dataset and each stage a one-step run. When the real configs are at hand (a local
folder, a cached hub snapshot or a config gemfactory ships) the twin takes the real LLM's
attention/rotary settings and key/value-head ratio and the real tower's depth, so a layer index out
of range for the real tower fails here too.
"""
from __future__ import annotations

import math
import tempfile
from pathlib import Path

from ..config import Recipe, recipe_from_dict
from ..data.synth import gem_layout_file
from ..hub import HubMissing, is_hub_ref, planning_source
from ..registry import CONNECTORS, ECG_ENCODERS, LLMS, VISION_TOWERS
from ..vision.depth import layer_indices

TINY_VOCAB = 512  # byte-level BPE: 256 bytes + specials + a few hundred merges
TINY_MAX_LENGTH = 512
TINY_BATCH = 4  # one sample per kind: ECG + image, ECG, image, text


def shrink(recipe: Recipe, data_dir: str | Path | None = None, output_dir: str | Path | None = None) -> Recipe:
    """The tiny twin of ``recipe`` (a new Recipe; ``recipe`` is not changed).

    ``data_dir``: a synthetic dataset folder (:func:`gemfactory.data.synth.synthesize`); the twin
    trains on its ``train.json`` -- in GEM's one-placeholder form for ``layout: gem`` recipes
    (:func:`gemfactory.data.synth.gem_layout_items`, written next to it). Without it, the data
    paths are cleared.
    """
    d = recipe.to_dict()
    d["model"] = _tiny_model(d["model"])
    d["data"] = _tiny_data(d["data"], data_dir, d["model"]["layout"])
    for stage in d["stages"]:
        stage.update(epochs=1.0, max_steps=1, batch_size=min(stage["batch_size"], TINY_BATCH),
                     gradient_accumulation_steps=1, max_length=None, train=None, image_folder=None,
                     ecg_folder=None)
    d["training"].update(output_dir=str(output_dir or Path(tempfile.gettempdir()) / "gemfactory-tiny"),
                         deepspeed=None, bf16=False, report_to=[], save_steps=0, logging_steps=1)
    d["description"] = f"tiny twin of {recipe.source}"
    return recipe_from_dict(d, source=f"{recipe.source} (tiny)")


def _tiny_model(model: dict) -> dict:
    family = LLMS.get(model["llm"]["name"])()
    llm = model["llm"]
    real = _real_config(llm["path"], "model.llm.path")
    attn = llm["attn_implementation"]
    model["llm"] = {**llm, "path": None, "tokenizer": None, "dtype": "float32",
                    "arch": family.tiny_arch_for(llm["arch"], real),
                    "tokenizer_vocab_size": min(llm["tokenizer_vocab_size"], TINY_VOCAB),
                    "attn_implementation": attn if attn in (None, "eager", "sdpa") else None}
    if model["vision"] is not None:
        vision = model["vision"]
        tower = VISION_TOWERS.get(vision["name"])
        folder = _real_config_folder(vision["path"], "model.vision.path")
        model["vision"] = {**vision, "path": None,
                           "arch": tower.tiny_arch_for(dict(vision["arch"]), dict(vision["options"]), folder)}
    if model["ecg"] is not None:
        model["ecg"] = ECG_ENCODERS.get(model["ecg"]["name"]).tiny_entry(model["ecg"])
    llm_width = int({**family.tiny_arch, **model["llm"]["arch"]}.get("hidden_size", 64))
    for modality, conn in model["connectors"].items():
        model["connectors"][modality] = {**conn, "path": None,
                                         "options": CONNECTORS.get(conn["name"]).tiny_options(conn["options"])}
        if conn["name"] == "identity":
            _match_identity_width(model, modality, llm_width)
    return model


def _tiny_data(data: dict, data_dir, layout: str) -> dict:
    train = image_folder = ecg_folder = None
    if data_dir is not None:
        data_dir = Path(data_dir)
        train = str(gem_layout_file(data_dir) if layout == "gem" else data_dir / "train.json")
        image_folder, ecg_folder = str(data_dir / "images"), str(data_dir / "ecg")
    return {**data, "train": train, "eval": None, "image_folder": image_folder or ".",
            "ecg_folder": ecg_folder or ".", "max_length": min(data["max_length"], TINY_MAX_LENGTH),
            "on_bad_sample": "skip", "max_bad_fraction": 1.0, "num_workers": 0}


def _real_config_folder(path: str | None, key: str) -> str | None:
    """A folder with the real model's config: the local path, its cached hub snapshot, or the
    config gemfactory ships for that repo; None when there is none (the tiny defaults apply)."""
    if not path:
        return None
    if not is_hub_ref(path):
        return path if Path(path).exists() else None
    try:
        return planning_source(path, key, "config")[0]
    except HubMissing:
        return None


def _real_config(path: str | None, key: str) -> dict | None:
    folder = _real_config_folder(path, key)
    if not folder or not (Path(folder) / "config.json").is_file():
        return None
    from transformers import AutoConfig  # lazily: only twins of real-size recipes read one

    return AutoConfig.from_pretrained(folder).to_dict()


def _match_identity_width(model: dict, modality: str, width: int) -> None:
    """An identity connector needs encoder width == LLM width: give the tiny encoder that width."""
    if modality == "image" and model["vision"] is not None:
        arch, options = model["vision"]["arch"], model["vision"]["options"]
        n_layers = len(layer_indices(options)[1]) or 1
        if "hidden_size" in arch and width % n_layers == 0:
            arch["hidden_size"] = width // n_layers
            arch["num_attention_heads"] = math.gcd(arch["hidden_size"], arch.get("num_attention_heads", 4))
    elif modality == "ecg" and model["ecg"] is not None:
        ECG_ENCODERS.get(model["ecg"]["name"]).tiny_match_width(model["ecg"]["arch"], width)
