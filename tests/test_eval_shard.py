"""``torchrun ... gemfactory eval``: the ranks share the batches and rank 0 writes one record,
byte-identical apart from its timestamp to the record of one process (about 40 s on 2 CPU cores)."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gemfactory.model.checkpoint import save_checkpoint

VENV_PATH = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"


@pytest.fixture(scope="module")
def ckpt(tiny_built, tmp_path_factory):
    _, tok, model, _ = tiny_built
    run = tmp_path_factory.mktemp("shardrun") / "tiny-run"
    save_checkpoint(model, tok, run / "finetune" / "model", recipe={"name": "tiny", "model": {"llm": {"name": "vicuna"}}})
    (run / "latest").write_text("finetune/model\n")
    return run


def _without_timestamp(path: Path) -> str:
    return "\n".join(line for line in path.read_text().splitlines() if not line.startswith(' "created"'))


def test_sharded_eval_writes_the_one_process_record(ckpt, tiny_data, tmp_path):
    from gemfactory.train.trainer import _free_port

    # 7 samples in batches of 2: rank 0 runs batches 0 and 2, rank 1 batches 1 and 3 (of 1 sample)
    args = ["-m", "gemfactory.cli", "eval", str(ckpt), "--data", str(tiny_data / "test.json"), "--task", "synthetic",
            "--limit", "7", "--batch-size", "2", "--seed", "3"]
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT")}
    env.update(OMP_NUM_THREADS="1", PATH=VENV_PATH)
    one = subprocess.run([sys.executable, *args, "--out", str(tmp_path / "one")], capture_output=True, text=True,
                         env=env, timeout=600, check=False)
    assert one.returncode == 0, one.stderr[-3000:]
    two = subprocess.run(["torchrun", "--nproc-per-node", "2", "--master-addr", "127.0.0.1", "--master-port",
                          str(_free_port()), *args, "--out", str(tmp_path / "two")],
                         capture_output=True, text=True, env=env, timeout=600, check=False)
    assert two.returncode == 0, two.stderr[-3000:]
    assert two.stdout.count("record written to") == 1  # rank 0 reports, rank 1 stays quiet
    assert [p.name for p in (tmp_path / "two").iterdir()] == ["tiny-run-synthetic.json"]
    a, b = (_without_timestamp(tmp_path / out / "tiny-run-synthetic.json") for out in ("one", "two"))
    assert a == b and a.count('"id"') == 7
