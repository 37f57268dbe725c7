"""The JSON record of one eval run: byte-stable for the same checkpoint, data and seed, apart from
``created`` (sorted keys, floats rounded to 6 digits, written atomically: temp file + rename)."""
from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import yaml

from ..model.checkpoint import resolve_model_dir

DIGITS = 6
TIMESTAMP = "created"


def sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def data_sha256(path: str | Path) -> str:
    """sha256 of a data file; of a folder: of its files' relative paths and sha256s, in sorted order."""
    path = Path(path)
    if not path.is_dir():
        return sha256(path)
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(f"{f.relative_to(path).as_posix()}\0{sha256(f)}\n".encode())
    return h.hexdigest()


def versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("gemfactory", "torch", "transformers"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def components(config: dict, recipe: dict | None) -> dict:
    """The model's parts as the zoo names them: LLM, tower, ECG encoder, connectors, recipe name."""
    conns = config.get("connectors") or {}
    run = ((recipe or {}).get("training") or {}).get("output_dir")
    return {"llm": config.get("llm_family"), "vision": (config.get("vision") or {}).get("name"),
            "ecg": (config.get("ecg") or {}).get("name"),
            "connector": "/".join(f"{k}:{(conns[k] or {}).get('name')}" for k in sorted(conns)) or None,
            "recipe": (recipe or {}).get("name") or (Path(run).name if run else None)}


def build(checkpoint, result: dict, data, seed: int, options: dict | None = None) -> dict:
    folder = resolve_model_dir(checkpoint)
    config = json.loads((folder / "config.json").read_text())
    recipe_file = folder / "gemfactory_recipe.yaml"
    recipe = yaml.safe_load(recipe_file.read_text()) if recipe_file.is_file() else None
    return {
        TIMESTAMP: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "model": {"path": str(folder), "config_sha256": sha256(folder / "config.json"),
                  "components": components(config, recipe)},
        "recipe": recipe,
        "task": result["task"], "task_options": dict(options or {}),
        "data": {"path": str(data), "sha256": data_sha256(data)},
        "seed": seed, "versions": versions(),
        "metrics": result["metrics"],
        "samples": [{"id": s["id"], "prompt": s["prompt"], "prediction": s["prediction"], "parsed": s["parsed"],
                     "reference": s["reference"], "correct": s["correct"],
                     **({"scores": s["scores"]} if s.get("scores") else {}),
                     **({"details": s["details"]} if s.get("details") else {})}
                    for s in result["samples"]],
    }


def _rounded(obj):
    if isinstance(obj, float):
        return round(obj, DIGITS) + 0.0  # -0.0 -> 0.0
    if isinstance(obj, dict):
        return {str(k): _rounded(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_rounded(v) for v in obj]
    return obj


def dumps(record: dict) -> str:
    return json.dumps(_rounded(record), indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def write(record: dict, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(dumps(record), encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def file_name(checkpoint, task: str) -> str:
    """``<run>-<task>.json``: the run folder's name (a model folder ``run/stage/model`` -> ``run``)."""
    p = Path(checkpoint).resolve()
    if p.name == "model" and (p / "config.json").is_file() and len(p.parents) > 1:
        p = p.parents[1]
    return f"{p.name}-{task}.json"
