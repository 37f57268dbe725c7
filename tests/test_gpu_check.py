"""scripts/gpu_check.sh is ready for a GPU host: valid bash, its --dry mode writes recipes that load
and plans their memory on a CPU, and gpu_mfu.py reads the trainer's summary line."""
import os
import subprocess
import sys
from pathlib import Path

from gemfactory.config import load_recipe

ROOT = Path(__file__).resolve().parents[1]


def test_script_parses_and_dry_run_plans_every_run(tiny_data, tmp_path):
    assert subprocess.run(["bash", "-n", "scripts/gpu_check.sh"], cwd=ROOT).returncode == 0
    env = {**os.environ, "DATA": str(tiny_data), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(["bash", "scripts/gpu_check.sh", "--dry", str(tmp_path)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert f"+ gemfactory eval {tmp_path}/tiny --task synthetic" in proc.stdout and "--device cuda" in proc.stdout
    report = (tmp_path / "report.txt").read_text()
    for name, packing, zero in (("phi2_padded", False, None), ("phi2_packed", True, None),
                                ("phi2_packed_zero3", True, "zero3")):
        recipe = load_recipe(tmp_path / f"{name}.yaml")
        assert recipe.data.packing is packing and recipe.training.deepspeed == zero
        assert recipe.training.fused_loss is (zero is None)  # the fused loss is refused under ZeRO-3
        assert recipe.model.llm.arch["hidden_size"] == 2560 and recipe.model.llm.arch["num_hidden_layers"] == 32
        assert recipe.training.bf16 and recipe.training.gradient_checkpointing
        assert f"== {name}" in report
    assert report.count("estimate   memory") == 3
    load_recipe(tmp_path / "tiny.yaml")


def test_mfu_from_a_summary_line(tmp_path):
    log = tmp_path / "run.log"
    log.write_text("INFO gemfactory.train.feedback: stage finetune summary: 20 steps in 50.0 s, 6.4 samples/s, "
                   "1000 tokens/s, peak memory 30.50 GiB (GPU)\n")
    recipe = tmp_path / "r.yaml"
    recipe.write_text((ROOT / "recipes/tiny-gem.yaml").read_text().replace("data/tiny-gem", str(tmp_path / "d")))
    from gemfactory.data.synth import synthesize

    synthesize(tmp_path / "d", n_train=4, n_test=2, seed=0)
    proc = subprocess.run([sys.executable, "scripts/gpu_mfu.py", str(log), str(recipe)], cwd=ROOT,
                          env={**os.environ, "PEAK_TFLOPS": "100"}, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "20 steps in 50.0 s" in proc.stdout and "1000 tokens/s" in proc.stdout and "peak memory 30.50 GiB" in proc.stdout
    assert "MFU" in proc.stdout and "of 100 TFLOP/s" in proc.stdout
    log.write_text("nothing\n")
    assert subprocess.run([sys.executable, "scripts/gpu_mfu.py", str(log), str(recipe)], cwd=ROOT,
                          capture_output=True, text=True).returncode == 1
