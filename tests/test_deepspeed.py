"""DeepSpeed ZeRO-2 on CPU, single process, set up by `gemfactory train` itself."""
import os
import subprocess
import sys

import yaml

from conftest import tiny_recipe


def test_tiny_recipe_trains_with_zero2(tiny_data, tmp_path):
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(yaml.safe_dump(tiny_recipe(tiny_data, tmp_path / "run")))
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT")}
    proc = subprocess.run(
        [sys.executable, "-m", "gemfactory.cli", "train", str(recipe), "training.deepspeed=zero2",
         "stages.finetune.max_steps=3"],
        capture_output=True, text=True, env=env, timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "stage finetune: DeepSpeed ZeRO-2, world size 1" in proc.stderr
    model_dir = tmp_path / "run" / "finetune" / "model"
    assert (model_dir / "model.safetensors").is_file()
    # the ZeRO-2 checkpoint loads as a normal HF folder
    from gemfactory.infer.load import load_pretrained_model

    loaded = load_pretrained_model(tmp_path / "run")
    assert loaded.signal_spec.fs == 100.0
