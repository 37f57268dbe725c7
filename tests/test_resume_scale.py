"""Resume at another scale: a ZeRO-3 run checkpointed at 4 processes continues at 2, and a
2-process checkpoint continues at 4, with the same global batch. The steps after the checkpoint
see the same samples (equal losses) and continue the optimizer state (equal Adam moments, compared
through DeepSpeed's universal checkpoint: a fresh optimizer would differ by tens of percent).

DDP and ZeRO-2 checkpoints of 2 processes continue on 1 the same way.

Long (marked ``long``): 112 s for the ZeRO-3 test, 40-70 s each for the 2 -> 1 ones on 2 shared CPU cores."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from conftest import tiny_recipe

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
LOSS_TOLERANCE = 1e-3  # bf16 gradient sums in another order (test_distributed.py)
MOMENT_TOLERANCE = 0.05  # relative L2 distance of the Adam moments; ~0.02 observed. A fresh optimizer
# at the resume would lack the first steps: its exp_avg_sq (beta2 0.999: about the sum of all squared
# gradients so far) would miss a third or more of it
VENV_PATH = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
GLOBAL_BATCH = 4


def _losses(run: Path) -> dict[int, float]:
    rows = [json.loads(line) for line in (run / "finetune" / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in rows if "loss" in r}


def _train(recipe_path: Path, procs: int, *extra: str) -> str:
    from gemfactory.train.trainer import _free_port

    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT")}
    env.update(OMP_NUM_THREADS="1", PATH=VENV_PATH, NPROC=str(procs), MASTER_PORT=str(_free_port()))
    proc = subprocess.run(["bash", str(SCRIPTS / "train_torchrun.sh"), str(recipe_path), *extra],
                          capture_output=True, text=True, env=env, timeout=1200, check=False)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc.stderr


def _recipe(tiny_data, run: Path, procs: int) -> Path:
    recipe = tiny_recipe(tiny_data, run, batch_size=GLOBAL_BATCH // procs, max_steps=6)
    recipe["training"].update(deepspeed="zero3", report_to=[], save_steps=2, save_total_limit=5)
    path = run.with_suffix(".yaml")
    path.write_text(yaml.safe_dump(recipe))
    return path


def _killed_copy(run: Path, to: Path, keep_step: int) -> None:
    """``run`` as a run killed right after checkpoint ``keep_step`` would have left it."""
    shutil.copytree(run, to)
    stage = to / "finetune"
    shutil.rmtree(stage / "model")
    for ckpt in stage.glob("checkpoint-*"):
        if int(ckpt.name.split("-")[1]) > keep_step:
            shutil.rmtree(ckpt)
    (stage / "latest-checkpoint").unlink(missing_ok=True)  # resume_point falls back to the newest
    recipe = yaml.safe_load((to / "recipe.yaml").read_text())
    recipe["training"]["output_dir"] = str(to)
    (to / "recipe.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))


def _moments(checkpoint: Path) -> dict[str, torch.Tensor]:
    from gemfactory.train.resume import universal_checkpoint

    folder = universal_checkpoint(checkpoint) / "zero"
    out = {}
    for param in sorted(p for p in folder.iterdir() if (p / "exp_avg.pt").is_file()):  # frozen ones: fp32 only
        for name in ("exp_avg", "exp_avg_sq"):
            state = torch.load(param / f"{name}.pt", weights_only=False)
            out[f"{param.name}/{name}"] = (state["param"] if isinstance(state, dict) else state).float().flatten()
    return out


def _assert_same_moments(a: Path, b: Path) -> None:
    x, y = _moments(a), _moments(b)
    assert x.keys() == y.keys() and x
    for kind in ("exp_avg", "exp_avg_sq"):
        keys = [k for k in x if k.endswith(f"/{kind}")]
        ref, got = torch.cat([x[k] for k in keys]), torch.cat([y[k] for k in keys])
        assert float((ref - got).norm() / ref.norm()) < MOMENT_TOLERANCE, kind


@pytest.mark.long
def test_zero3_checkpoint_resumes_at_half_and_at_double_the_processes(tiny_data, tmp_path):
    four = tmp_path / "four"
    _train(_recipe(tiny_data, four, 4), 4)  # reference: steps 1-6 at 4 processes, checkpoints 2, 4, 6
    reference = _losses(four)
    assert sorted(reference) == [1, 2, 3, 4, 5, 6]

    two = tmp_path / "two"  # killed after step 2 at 4 processes, resumed at 2 (per-device batch 2)
    _killed_copy(four, two, keep_step=2)
    log = _train(_recipe(tiny_data, two, 2), 2, "--resume")
    assert "at another scale: 2 process(es) now" in log
    assert (two / "finetune" / "checkpoint-2" / "latest_universal").is_file()
    resumed = _losses(two)
    for step in (3, 4, 5, 6):
        assert resumed[step] == pytest.approx(reference[step], abs=LOSS_TOLERANCE), f"4 -> 2, step {step}"
    _assert_same_moments(four / "finetune" / "checkpoint-6", two / "finetune" / "checkpoint-6")

    back = tmp_path / "back"  # the 2-process checkpoint 4 resumed at 4 processes
    _killed_copy(two, back, keep_step=4)
    assert "at another scale: 4 process(es) now" in _train(_recipe(tiny_data, back, 4), 4, "--resume")
    for step in (5, 6):
        assert _losses(back)[step] == pytest.approx(reference[step], abs=LOSS_TOLERANCE), f"2 -> 4, step {step}"
    _assert_same_moments(four / "finetune" / "checkpoint-6", back / "finetune" / "checkpoint-6")


def test_resume_at_another_global_batch_is_refused(tmp_path):
    from gemfactory.errors import ConfigError
    from gemfactory.train.resume import WORLD_FILE, check_scale

    (tmp_path / WORLD_FILE).write_text(json.dumps({"world_size": 4, "global_batch": 4}))
    assert check_scale(tmp_path, 2, 4) and not check_scale(tmp_path, 4, 4)
    with pytest.raises(ConfigError, match=r"global batch of 4 samples \(4 process\(es\)\); now it is 8 \(2"):
        check_scale(tmp_path, 2, 8)


def _one_process(recipe_path: Path, *extra: str) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT")}
    env.update(OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "gemfactory.cli", "train", str(recipe_path), *extra],
                          capture_output=True, text=True, env=env, timeout=1200, check=False)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc.stderr


@pytest.mark.long
@pytest.mark.parametrize("deepspeed", [None, "zero2"])
def test_two_process_checkpoint_resumes_on_one(deepspeed, tiny_data, tmp_path):
    """DDP (HF-level state, nothing to convert) and ZeRO-2 (universal conversion): 2 -> 1 process."""
    def recipe(run: Path, procs: int) -> Path:
        raw = tiny_recipe(tiny_data, run, batch_size=GLOBAL_BATCH // procs, max_steps=4)
        raw["training"].update(deepspeed=deepspeed, report_to=[], save_steps=2, save_total_limit=5)
        path = run.with_suffix(".yaml")
        path.write_text(yaml.safe_dump(raw))
        return path

    two = tmp_path / "two"
    _train(recipe(two, 2), 2)
    one = tmp_path / "one"
    _killed_copy(two, one, keep_step=2)
    assert "at another scale: 1 process(es) now" in _one_process(recipe(one, 1), "--resume")
    assert (one / "finetune" / "checkpoint-2" / "latest_universal").is_file() == bool(deepspeed)
    reference, resumed = _losses(two), _losses(one)
    for step in (3, 4):
        assert resumed[step] == pytest.approx(reference[step], abs=LOSS_TOLERANCE), f"step {step}"
    if deepspeed:
        _assert_same_moments(two / "finetune" / "checkpoint-4", one / "finetune" / "checkpoint-4")
    else:  # optimizer.pt holds the whole state
        a, b = (torch.load(r / "finetune" / "checkpoint-4" / "optimizer.pt", weights_only=False)["state"]
                for r in (two, one))
        assert a.keys() == b.keys() and a
        for key in a:
            ref, got = a[key]["exp_avg_sq"].flatten(), b[key]["exp_avg_sq"].flatten()
            assert float((ref - got).norm() / ref.norm().clamp_min(1e-30)) < MOMENT_TOLERANCE, key
