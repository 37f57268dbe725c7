"""Mid-stage checkpoints that survive a kill at any moment, and where ``--resume`` continues.

A stage folder holds ``checkpoint-N/`` folders (HF Trainer state: weights, optimizer, scheduler,
RNG, data position), a ``latest-checkpoint`` pointer and, once the stage is done, ``model/``.
A checkpoint is written under ``.saving/`` and renamed into place only when complete; the pointer
moves after the rename, then all but the newest ``save_total_limit`` checkpoints are removed.

Resuming at another scale (4 processes -> 2, or the reverse): each checkpoint records the world
size and global batch it was written with (``gemfactory_world.json``). The per-device batch and
gradient accumulation may change on ``--resume`` as long as the global batch stays the same, so
every optimizer step sees the same samples (the sampler's order is global; accelerate hands rank r
its share). HF-level state (weights, optimizer.pt of a DDP run, scheduler, data position) does not
depend on the number of processes; DeepSpeed's ZeRO optimizer state is partitioned per rank, so a
ZeRO checkpoint is converted once to DeepSpeed's universal checkpoint (``ds_to_universal``, kept
beside it as ``global_stepN_universal``), which loads at any data-parallel size.
"""
from __future__ import annotations

import json
import logging
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from ..errors import CheckpointError, ConfigError
from ..model.checkpoint import point_latest, publish, read_pointer

log = logging.getLogger(__name__)
CHECKPOINT_POINTER = "latest-checkpoint"
STAGING = ".saving"
RECIPE_FILE = "recipe.yaml"  # in the run folder: the recipe the run was started with
WORLD_FILE = "gemfactory_world.json"  # in each checkpoint: {"world_size": n, "global_batch": n}
SCALE_KEYS = ("batch_size", "gradient_accumulation_steps")  # stage keys a resume at another scale may change
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
            if self.args.should_save:
                args = self.args
                world = {"world_size": max(args.world_size, 1),
                         "global_batch": global_batch(args.per_device_train_batch_size,
                                                      args.gradient_accumulation_steps, max(args.world_size, 1))}
                (staging / name / WORLD_FILE).write_text(json.dumps(world) + "\n")
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


def global_batch(per_device: int, accumulation: int, world_size: int) -> int:
    return per_device * accumulation * world_size


def checkpoint_world(checkpoint: Path) -> dict | None:
    path = Path(checkpoint) / WORLD_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def check_scale(checkpoint: Path, world_size: int, batch: int) -> bool:
    """Whether the checkpoint was written at another world size; refuses another global batch."""
    saved = checkpoint_world(checkpoint)
    if saved is None:  # written before gemfactory recorded it: the same scale is assumed
        return False
    if saved["global_batch"] != batch:
        raise ConfigError(
            f"--resume: {checkpoint} was written with a global batch of {saved['global_batch']} samples "
            f"({saved['world_size']} process(es)); now it is {batch} ({world_size} process(es)): set "
            f"batch_size x gradient_accumulation_steps x processes to {saved['global_batch']} again")
    return saved["world_size"] != world_size


def universal_checkpoint(checkpoint: Path) -> Path:
    """Convert a DeepSpeed ZeRO checkpoint (``global_stepN/``) to a universal one beside it, once;
    run on one rank while the others wait."""
    steps = sorted(p for p in Path(checkpoint).glob("global_step*") if p.is_dir() and not p.name.endswith("_universal"))
    if not steps:
        raise CheckpointError(f"{checkpoint}: no DeepSpeed global_step* folder to resume at another scale from")
    target = steps[-1].with_name(f"{steps[-1].name}_universal")
    if (Path(checkpoint) / "latest_universal").is_file() and target.is_dir():
        return target
    shutil.rmtree(target, ignore_errors=True)  # a conversion that was killed
    proc = subprocess.run([sys.executable, "-m", "deepspeed.checkpoint.ds_to_universal", "--input_folder",
                           str(steps[-1]), "--output_folder", str(target), "--inject_missing_state",
                           "--num_extract_workers", "1", "--num_merge_workers", "1"],
                          check=False, capture_output=True, text=True)
    if proc.returncode != 0:
        shutil.rmtree(target, ignore_errors=True)
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise CheckpointError(f"could not convert {steps[-1]} to a universal checkpoint: {last}")
    return target


def resume_at_scale(trainer, checkpoint: Path) -> None:
    """A checkpoint written by another number of processes (same global batch, see resume.py):
    DeepSpeed loads its ZeRO state from the universal conversion, made once by rank 0."""
    args = trainer.args
    world = max(args.world_size, 1)
    if not check_scale(checkpoint, world, global_batch(args.per_device_train_batch_size,
                                                       args.gradient_accumulation_steps, world)):
        return
    log.info("resuming %s at another scale: %d process(es) now", checkpoint, world)
    if not trainer.is_deepspeed_enabled:
        return  # weights, optimizer.pt, scheduler and data position are the same for any world size
    if args.process_index == 0:
        log.info("DeepSpeed state converted to %s", universal_checkpoint(checkpoint))
    trainer.accelerator.wait_for_everyone()
    config = trainer.accelerator.state.deepspeed_plugin.deepspeed_config
    config.setdefault("checkpoint", {})["load_universal"] = True


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
        changed = [c for c in _differences(before, yaml.safe_load(yaml.safe_dump(recipe)))
                   if not _is_scale_key(c[0])]  # checked against the checkpoint: check_scale
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


def _is_scale_key(key: str) -> bool:
    parts = key.split(".")
    return len(parts) == 3 and parts[0] == "stages" and parts[2] in SCALE_KEYS


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
