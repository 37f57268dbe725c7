"""Mid-stage checkpoints that survive a kill at any moment, and where ``--resume`` continues.

A stage folder holds ``checkpoint-N/`` folders (HF Trainer state: weights, optimizer, scheduler,
RNG, data position), a ``latest-checkpoint`` pointer and, once the stage is done, ``model/``.
A checkpoint is written under ``.saving/`` and renamed into place only when complete; the pointer
moves after the rename, then all but the newest ``save_total_limit`` checkpoints are removed.
"""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import yaml

from ..errors import CheckpointError, ConfigError
from ..model.checkpoint import point_latest, publish, read_pointer

CHECKPOINT_POINTER = "latest-checkpoint"
STAGING = ".saving"
RECIPE_FILE = "recipe.yaml"  # in the run folder: the recipe the run was started with
_CHECKPOINT = re.compile(r"checkpoint-(\d+)")


class AtomicCheckpoints:
    """Trainer mixin: HF writes each checkpoint into a staging folder that goes live in one rename."""

    _staging: Path | None = None

    def _get_output_dir(self, trial):
        return str(self._staging) if self._staging is not None else super()._get_output_dir(trial)

    def _save_checkpoint(self, model, trial):
        stage_dir = Path(self.args.output_dir)
        staging = stage_dir / STAGING
        if self.args.should_save:
            shutil.rmtree(staging, ignore_errors=True)  # left behind by a save that was killed
        self.accelerator.wait_for_everyone()
        self._staging = staging
        name = f"checkpoint-{self.state.global_step}"
        try:
            super()._save_checkpoint(model, trial)  # every rank writes its optimizer shard there
        except OSError as exc:  # disk full, quota...: the previous checkpoint and the pointer stay as they were
            raise _save_failed(stage_dir / name, staging, exc) from None
        finally:
            self._staging = None
        self.accelerator.wait_for_everyone()
        if self.args.should_save:
            try:
                publish(staging / name, stage_dir / name)
                point_latest(stage_dir, stage_dir / name, CHECKPOINT_POINTER)
            except OSError as exc:
                raise _save_failed(stage_dir / name, staging, exc) from None
            keep_newest(stage_dir, self.args.save_total_limit)
            shutil.rmtree(staging, ignore_errors=True)
        self.accelerator.wait_for_everyone()


def _save_failed(target: Path, staging: Path, exc: OSError) -> CheckpointError:
    shutil.rmtree(staging, ignore_errors=True)
    return CheckpointError(f"could not save checkpoint {target}: {exc.strerror or exc}; the previous "
                           f"checkpoint and {CHECKPOINT_POINTER} are kept")


def checkpoints(stage_dir: Path) -> list[Path]:
    """Complete checkpoint folders of a stage, oldest step first."""
    found = [(int(m.group(1)), p) for p in Path(stage_dir).glob("checkpoint-*")
             if (m := _CHECKPOINT.fullmatch(p.name)) and p.is_dir()]
    return [p for _, p in sorted(found)]


def keep_newest(stage_dir: Path, limit: int | None) -> None:
    if not limit or limit < 1:
        return
    for old in checkpoints(stage_dir)[:-limit]:
        shutil.rmtree(old, ignore_errors=True)


def resume_point(stage_dir: Path) -> Path | None:
    """The checkpoint ``--resume`` continues a stage from (None: start the stage from its beginning)."""
    target = read_pointer(stage_dir, CHECKPOINT_POINTER)
    if target is not None and (target / "trainer_state.json").is_file():
        return target
    done = [p for p in checkpoints(stage_dir) if (p / "trainer_state.json").is_file()]
    return done[-1] if done else None


def stage_done(stage_dir: Path) -> bool:
    return (Path(stage_dir) / "model" / "config.json").is_file()


def refuse_stale_checkpoints(stage_dir: Path, stage: str) -> None:
    """A fresh run must not mix its checkpoints with an earlier run's (rotation would keep theirs)."""
    old = checkpoints(stage_dir)
    if old:
        raise ConfigError(
            f"{stage_dir} holds {old[-1].name} from an earlier run of stage {stage!r}: pass --resume to "
            f"continue it, or remove that folder / pick another training.output_dir to start over"
        )


def remember_recipe(run_dir: Path, recipe: dict, resume: bool) -> None:
    """Write the recipe a run starts with; on --resume, refuse a recipe that changed since."""
    path = Path(run_dir) / RECIPE_FILE
    if resume and path.is_file():
        before = yaml.safe_load(path.read_text())
        changed = list(_differences(before, yaml.safe_load(yaml.safe_dump(recipe))))
        if changed:
            key, old, new = changed[0]
            more = f" (and {len(changed) - 1} more)" if len(changed) > 1 else ""
            raise ConfigError(
                f"--resume: {key} was {old!r} when {run_dir} started and is {new!r} now{more}; resume with "
                f"the same recipe, or pick another training.output_dir to start over"
            )
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{RECIPE_FILE}.tmp")
    tmp.write_text(yaml.safe_dump(recipe, sort_keys=False))
    tmp.replace(path)


def _differences(a, b, prefix: str = ""):
    """(dotted key, old, new) for each leaf that differs; list items of equal-length lists are
    named by their ``name`` (stages) or index."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b), key=str):
            yield from _differences(a.get(key), b.get(key), f"{prefix}{key}.")
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            same_name = isinstance(x, dict) and isinstance(y, dict) and x.get("name") == y.get("name")
            yield from _differences(x, y, f"{prefix}{x['name'] if same_name else i}.")
    elif a != b:
        yield prefix.rstrip("."), a, b
