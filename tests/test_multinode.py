"""Two "nodes" of two processes each on this machine (two launches on 127.0.0.1): torchrun with a
c10d rendezvous (plain DDP), and DeepSpeed's own launcher with a hostfile (without ssh, as under
SLURM; ZeRO-2).
The loss curve matches the one-process run with the same global batch, and every process exits 0.

Long (marked ``long``): each 4-process run takes 1-3 minutes on 2 shared CPU cores."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import tiny_recipe

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
LOSS_TOLERANCE = 1e-3  # as in test_distributed.py: bf16 gradient sums in another order
VENV_PATH = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
LAUNCH_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT", "MASTER_ADDR", "NNODES", "NODE_RANK", "NPROC")


def _losses(run: Path) -> dict[int, float]:
    rows = [json.loads(line) for line in (run / "finetune" / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in rows if "loss" in r}


def _recipe(tiny_data, tmp: Path, name: str, batch: int, deepspeed: str | None) -> Path:
    recipe = tiny_recipe(tiny_data, tmp / name, batch_size=batch, max_steps=3)
    recipe["training"].update(deepspeed=deepspeed, report_to=[])
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in LAUNCH_ENV}
    env.update(OMP_NUM_THREADS="1", PATH=VENV_PATH, DS_ACCELERATOR="cpu", **extra)
    return env


def _one_process(tiny_data, tmp: Path, deepspeed: str | None) -> dict[int, float]:
    recipe = _recipe(tiny_data, tmp, "one", 4, deepspeed)
    proc = subprocess.run([sys.executable, "-m", "gemfactory.cli", "train", str(recipe)],
                          capture_output=True, text=True, env=_env(), timeout=900, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return _losses(tmp / "one")


@pytest.mark.long
@pytest.mark.parametrize("engine, deepspeed", [("torchrun", None), ("deepspeed", "zero2")])
def test_two_nodes_of_two_processes_train_like_one_process(engine, deepspeed, tiny_data, tmp_path):
    from gemfactory.train.trainer import _free_port

    one_process = _one_process(tiny_data, tmp_path, deepspeed)
    recipe = _recipe(tiny_data, tmp_path, "run", 1, deepspeed)  # 2 nodes x 2 processes x 1 = the global batch 4
    logs = tmp_path / "logs"
    proc = subprocess.run(["bash", str(SCRIPTS / "train_two_nodes_local.sh"), str(recipe)], capture_output=True,
                          text=True, timeout=1200,
                          env=_env(ENGINE=engine, NPROC="2", MASTER_PORT=str(_free_port()), LOG_DIR=str(logs)))
    node_logs = {n: (logs / f"node{n}.log").read_text() for n in (0, 1)}
    assert proc.returncode == 0, proc.stderr[-2000:] + node_logs[0][-3000:] + node_logs[1][-3000:]
    assert json.loads((tmp_path / "run" / "finetune" / "summary.json").read_text())["world_size"] == 4
    if deepspeed:
        assert "DeepSpeed ZeRO-2, world size 4" in node_logs[0] + node_logs[1]
    assert not any("terminate called" in text for text in node_logs.values())
    four = _losses(tmp_path / "run")
    assert sorted(four) == sorted(one_process) == [1, 2, 3]
    for step, loss in one_process.items():
        assert four[step] == pytest.approx(loss, abs=LOSS_TOLERANCE), f"step {step}"
