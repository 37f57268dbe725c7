"""Kill a training run with SIGKILL (mid-step, or while a checkpoint is being written), resume it,
and get the same losses step for step as a run that was never interrupted (CPU, fp32, <= 1e-4)."""
import json
import os
import subprocess
import sys
import textwrap

import pytest
import yaml

from conftest import tiny_recipe

# pre: 6 steps, LLM frozen; fine: LoRA on the LLM, two epochs of the 54 tiny items in batches of 3
# (36 steps); a resumable checkpoint every 4 steps, the 2 newest kept
STAGES = [{"name": "pre", "max_steps": 6, "batch_size": 3, "tune": {"llm": "frozen"}},
          {"name": "fine", "epochs": 2, "batch_size": 3, "tune": {"llm": "lora"}, "lora": {"r": 4}}]

# runs `gemfactory train`, SIGKILLing itself when the named point is reached at the given step
DRIVER = textwrap.dedent("""
    import os, signal, sys
    from gemfactory.cli import main
    from gemfactory.train import resume, trainer

    point, stage, step = sys.argv[1], sys.argv[2], int(sys.argv[3])

    def kill():
        os.kill(os.getpid(), signal.SIGKILL)

    if point == "step":
        original_step = trainer.GemTrainer.training_step
        def training_step(self, *args, **kwargs):
            if self.args.output_dir.endswith(stage) and self.state.global_step == step:
                kill()
            return original_step(self, *args, **kwargs)
        trainer.GemTrainer.training_step = training_step
    elif point == "save":  # the checkpoint is fully written under .saving/ but not yet renamed into place
        original_publish = resume.publish
        def publish(tmp, out):
            if out.name == f"checkpoint-{step}" and out.parent.name == stage:
                kill()
            return original_publish(tmp, out)
        resume.publish = publish
    sys.exit(main(sys.argv[4:]))
""")


def _train(tmp_path, recipe_path, *extra, kill=("none", "-", "0")):
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT")}
    return subprocess.run([sys.executable, str(driver), *kill, "train", str(recipe_path), *extra],
                          capture_output=True, text=True, env=env, timeout=600)


def _write_recipe(tiny_data, tmp_path, out):
    recipe = tiny_recipe(tiny_data, out)
    recipe["stages"] = STAGES
    recipe["training"].update(save_steps=4, save_total_limit=2)
    path = tmp_path / f"{out.name}.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def _metrics(run_dir, stage):
    rows = [json.loads(line) for line in (run_dir / stage / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: (r["loss"], r["grad_norm"]) for r in rows if "loss" in r}


@pytest.fixture(scope="module")
def uninterrupted(tiny_data, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("uninterrupted")
    proc = _train(tmp, _write_recipe(tiny_data, tmp, tmp / "run"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    for stage in ("pre", "fine"):  # what a stage leaves for the user besides checkpoints
        assert list((tmp / "run" / stage).rglob("events.out.tfevents.*")), "no TensorBoard events"
        assert (tmp / "run" / stage / "loss.png").stat().st_size > 0
    return tmp / "run"


@pytest.mark.parametrize("point, stage, step, resumes_from", [
    ("step", "fine", 21, "checkpoint-20"),  # second epoch, mid-step
    ("save", "fine", 8, "checkpoint-4"),    # killed while checkpoint-8 goes live: checkpoint-4 still whole
])
def test_killed_run_resumes_with_identical_losses(tiny_data, tmp_path, uninterrupted, point, stage, step,
                                                  resumes_from):
    run = tmp_path / "run"
    recipe = _write_recipe(tiny_data, tmp_path, run)
    killed = _train(tmp_path, recipe, kill=(point, stage, str(step)))
    assert killed.returncode == -9, killed.stderr[-3000:]
    assert (run / "pre" / "model" / "config.json").is_file()
    assert not (run / "fine" / "model").exists()
    assert (run / "fine" / "latest-checkpoint").read_text().strip() == resumes_from

    again = _train(tmp_path, recipe)  # without --resume a fresh run refuses to mix with the old checkpoints
    assert again.returncode == 2
    assert "pass --resume" in again.stderr and "Traceback" not in again.stderr

    resumed = _train(tmp_path, recipe, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "stage(s) pre already finished" in resumed.stderr
    assert f"stage fine: resuming from {run / 'fine' / resumes_from}" in resumed.stderr
    for name in ("pre", "fine"):
        expected, got = _metrics(uninterrupted, name), _metrics(run, name)
        assert sorted(got) == sorted(expected) == list(range(1, len(expected) + 1))
        for s in expected:
            assert got[s] == pytest.approx(expected[s], abs=1e-4), f"stage {name} step {s}"
    # the two newest resumable checkpoints are kept, no staging left behind
    last = max(_metrics(uninterrupted, "fine"))
    assert last == 36
    assert sorted(p.name for p in (run / "fine").glob("checkpoint-*")) == ["checkpoint-32", "checkpoint-36"]
    assert not (run / "fine" / ".saving").exists()
    from gemfactory.infer.load import load_pretrained_model

    assert load_pretrained_model(run).path == str(run / "fine" / "model")
    assert (run / "fine" / "model" / "adapter" / "adapter_config.json").is_file()


def test_resume_refuses_a_changed_recipe(tiny_data, tmp_path):
    run = tmp_path / "run"
    recipe = _write_recipe(tiny_data, tmp_path, run)
    assert _train(tmp_path, recipe, kill=("step", "pre", "5")).returncode == -9
    proc = _train(tmp_path, recipe, "--resume", "stages.fine.lr=0.5")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        f"error: --resume: stages.fine.lr was 2e-05 when {run} started and is 0.5 now; resume with the same "
        "recipe, or pick another training.output_dir to start over")
