import pytest
import yaml

from conftest import tiny_recipe
from gemfactory.cli import main
from gemfactory.train.dry_run import memory_estimate


def test_memory_estimate_follows_zero_partitioning():
    gib = 2**30
    est = memory_estimate(total=7_000_000_000, trainable=7_000_000_000, devices=8, bf16=True)
    assert est["no ZeRO"] / gib == pytest.approx(16 * 7e9 / gib)           # 2 + 2 + 12 bytes per param
    assert est["ZeRO-2"] / gib == pytest.approx((2 * 7e9 + 14 * 7e9 / 8) / gib)
    assert est["ZeRO-3"] / gib == pytest.approx(16 * 7e9 / 8 / gib)
    frozen_llm = memory_estimate(total=1000, trainable=0, devices=1, bf16=False)
    assert frozen_llm["no ZeRO"] == 4000  # fp32 weights only


def test_dry_run_reports_and_trains_nothing(tiny_data, tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    raw = tiny_recipe(tiny_data, tmp_path / "run")
    raw["data"]["max_length"] = 60
    recipe.write_text(yaml.safe_dump(raw))
    assert main(["-q", "train", str(recipe), "--dry-run", "--devices", "2"]) == 0
    out = capsys.readouterr().out
    assert "== stage finetune" in out
    for comp in ("llm", "vision", "ecg", "connectors"):
        assert f"  {comp} " in out
    assert "vision     frozen" in out  # the default tune type of a tower
    data_line = next(line for line in out.splitlines() if line.strip().startswith("data"))
    n_over = int(data_line.split("; ")[2].split(" over")[0])
    assert n_over > 0 and "over max_length 60" in data_line
    assert "per device over 2 device(s): no ZeRO" in out and "s/step here" in out
    assert not (tmp_path / "run").exists()
