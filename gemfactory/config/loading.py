"""Reading a recipe: YAML files, ``base:`` inheritance, dotted command-line overrides, then the typed
sections (:mod:`.typecheck`) and their checks (each section's ``problems()``)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from ..errors import ConfigError
from ..fileio import read_utf8
from .recipe import Recipe
from .stage import StageConfig
from .typecheck import build


def load_recipe(path: str | Path, overrides: list[str] = ()) -> Recipe:
    path = Path(path)
    raw = _read_with_bases(path, seen=())
    for item in overrides:
        apply_override(raw, item, source=str(path))
    return recipe_from_dict(raw, source=str(path))


def recipe_from_dict(raw: dict, source: str = "<dict>") -> Recipe:
    raw = dict(raw)
    raw.pop("base", None)
    recipe = build(Recipe, raw, source, "")
    recipe.source = source
    for key, problem in recipe.problems():  # the first one, as every user error is one line
        raise ConfigError(f"{source}: {key}: {problem}")
    return recipe


def _read_yaml(path: Path) -> dict:
    text = read_utf8(path, ConfigError, f"recipe not found: {path}")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}:{where}: malformed YAML: {problem}") from None
    if data is None:
        raise ConfigError(f"{path}: the recipe is empty")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def _read_with_bases(path: Path, seen: tuple) -> dict:
    resolved = path.resolve()
    if resolved in seen:
        raise ConfigError(f"{path}: 'base:' inheritance loops back to itself")
    data = _read_yaml(path)
    base = data.pop("base", None)
    if base is None:
        return data
    if not isinstance(base, str):
        raise ConfigError(f"{path}: base: expected a recipe path, got {base!r}")
    parent = _read_with_bases(path.parent / base, seen + (resolved,))
    return deep_merge(parent, data)


def deep_merge(base: dict, top: dict) -> dict:
    """Mappings merge key by key; stages merge by name; anything else in ``top`` replaces.

    A component entry naming another component (``model.ecg: {name: other}``) replaces the
    inherited entry instead: the inherited ``arch`` / ``options`` belong to the old component.
    """
    out = dict(base)
    for key, value in top.items():
        if key == "stages" and isinstance(value, list) and isinstance(out.get(key), list):
            out[key] = _merge_stages(out[key], value)
        elif isinstance(value, dict) and isinstance(out.get(key), dict) \
                and value.get("name", out[key].get("name")) == out[key].get("name"):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _merge_stages(base: list, top: list) -> list:
    by_name = {s.get("name"): s for s in base if isinstance(s, dict)}
    merged = []
    for stage in top:
        if isinstance(stage, dict) and stage.get("name") in by_name:
            merged.append(deep_merge(by_name[stage["name"]], stage))
        else:
            merged.append(stage)
    return merged


def apply_override(raw: dict, item: str, source: str = "<overrides>") -> None:
    """Apply ``a.b.c=value`` (value parsed as YAML) to the raw recipe mapping in place."""
    if "=" not in item:
        raise ConfigError(f"override {item!r}: expected KEY=VALUE, e.g. training.seed=1")
    key, _, text = item.partition("=")
    parts = key.strip().split(".")
    if not all(parts):
        raise ConfigError(f"override {item!r}: empty part in key {key!r}")
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        value = text
    node: Any = raw
    for depth, part in enumerate(parts[:-1]):
        where = ".".join(parts[: depth + 1])
        if isinstance(node, list):
            node = _stage_by_name(node, part, item)
            continue
        if not isinstance(node, dict):
            raise ConfigError(f"override {item!r}: {where} is not a section")
        if part == "stages" and part not in node:
            node[part] = [dict(name=StageConfig.name)]
        node = node.setdefault(part, {})
    last = parts[-1]
    if isinstance(node, list):
        raise ConfigError(f"override {item!r}: name a stage, e.g. stages.<name>.{last}=...")
    if not isinstance(node, dict):
        raise ConfigError(f"override {item!r}: {'.'.join(parts[:-1])} is not a section")
    node[last] = value


def _stage_by_name(stages: list, part: str, item: str) -> dict:
    names = [s.get("name", StageConfig.name) if isinstance(s, dict) else None for s in stages]
    if part in names:
        return stages[names.index(part)]
    if part.isdigit() and int(part) < len(stages):
        return stages[int(part)]
    raise ConfigError(f"override {item!r}: no stage named {part!r} (stages: {names})")
