"""The local files and folders a full-size recipe names (weights, data, DeepSpeed JSON) that do not
exist, for ``gemfactory recipe check``; hub repo ids are resolved through the cache instead."""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from ..config import Recipe
from ..hub import is_hub_ref
from .trainer import DEEPSPEED_DIR


class LocalPath(NamedTuple):
    key: str
    path: str
    what: str


def missing_local_paths(recipe: Recipe) -> list[LocalPath]:
    """Local files and folders the recipe names that do not exist (weights, data, DeepSpeed JSON);
    hub repo ids are not local paths and are left out."""
    m, d = recipe.model, recipe.data
    wanted = [
        LocalPath("model.llm.path", m.llm.path, "a Hugging Face model folder"),
        LocalPath("model.llm.tokenizer", m.llm.tokenizer, "a tokenizer folder"),
    ]
    if m.vision is not None:
        kind = "a weight file" if m.vision.name in ("timm", "open_clip") else "a Hugging Face model folder"
        wanted.append(LocalPath("model.vision.path", m.vision.path, kind))
    if m.ecg is not None:
        wanted.append(LocalPath("model.ecg.path", m.ecg.path, "an encoder weight file"))
    for name, conn in m.connectors.items():
        wanted.append(LocalPath(f"model.connectors.{name}.path", getattr(conn, "path", None), "a weight file"))
    wanted.append(LocalPath("data.train", d.train, "a JSON data file"))
    wanted.append(LocalPath("data.eval", d.eval, "a JSON data file"))
    if m.vision is not None:
        wanted.append(LocalPath("data.image_folder", d.image_folder, "the image folder"))
    if m.ecg is not None:
        wanted.append(LocalPath("data.ecg_folder", d.ecg_folder, "the ECG record folder"))
    for s in recipe.stages:
        wanted.append(LocalPath(f"stages.{s.name}.train", s.train, "a JSON data file"))
        for key, what in (("image_folder", "the image folder"), ("ecg_folder", "the ECG record folder")):
            wanted.append(LocalPath(f"stages.{s.name}.{key}", getattr(s, key, None), what))
    ds = recipe.training.deepspeed
    if ds and not (DEEPSPEED_DIR / f"{ds}.json").is_file():
        wanted.append(LocalPath("training.deepspeed", ds, "a DeepSpeed JSON file"))
    seen, out = set(), []
    for item in wanted:
        if item.key.startswith("model.") and is_hub_ref(item.path):
            continue  # a hub repo: resolved through the cache (hub_status says whether it is there)
        if item.path and not Path(item.path).exists() and (item.key, item.path) not in seen:
            seen.add((item.key, item.path))
            out.append(item)
    return out
