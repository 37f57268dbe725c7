"""Checkpoints are HF folders written atomically: temp folder, then one rename."""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Callable

import yaml

from ..errors import CheckpointError

LATEST = "latest"  # text file in a run folder naming the newest complete model folder


def save_checkpoint(model, tokenizer, out_dir: str | Path, recipe: dict | None = None,
                    extra: Callable[[Path], None] | None = None, state_dict: dict | None = None) -> Path:
    """``extra(folder)`` writes more files (e.g. the LoRA adapter) before the folder goes live;
    ``state_dict``: weights gathered elsewhere (DeepSpeed ZeRO-3) instead of the model's own."""
    out = Path(out_dir)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        model.save_pretrained(tmp, safe_serialization=True, state_dict=state_dict)
        tokenizer.save_pretrained(tmp)
        if recipe is not None:
            (tmp / "gemfactory_recipe.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))
        if extra is not None:
            extra(tmp)
        publish(tmp, out)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if not isinstance(exc, OSError):
            raise
        raise CheckpointError(f"could not save checkpoint to {out}: {exc.strerror or exc}") from None
    return out


def publish(tmp: Path, out: Path) -> None:
    """Make a fully written folder live under its final name; a reader sees the old or the new one."""
    fsync_tree(tmp)
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
        try:
            os.replace(tmp, out)
        except BaseException:
            os.replace(old, out)  # the previous folder goes back under its name
            raise
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, out)


def point_latest(run_dir: str | Path, model_dir: str | Path, name: str = LATEST) -> None:
    """Atomically (re)write the pointer file ``run_dir/name`` to name ``model_dir``."""
    run = Path(run_dir)
    tmp = run / f".{name}.tmp"
    tmp.write_text(os.path.relpath(model_dir, run) + "\n")
    os.replace(tmp, run / name)


def read_pointer(run_dir: str | Path, name: str = LATEST) -> Path | None:
    pointer = Path(run_dir) / name
    return Path(run_dir) / pointer.read_text().strip() if pointer.is_file() else None


def resolve_model_dir(path: str | Path) -> Path:
    """A model folder, or a run folder whose ``latest`` file names one."""
    p = Path(path)
    if (p / "config.json").is_file():
        return p
    target = read_pointer(p)
    if target is not None:
        if (target / "config.json").is_file():
            return target
        raise CheckpointError(f"{p / LATEST} points at {target}, which holds no config.json")
    if not p.exists():
        raise CheckpointError(f"checkpoint not found: {p}")
    raise CheckpointError(f"{p}: not a gemfactory checkpoint (no config.json and no '{LATEST}' file)")


def fsync_tree(folder: Path) -> None:
    for f in folder.rglob("*"):
        if f.is_file():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
