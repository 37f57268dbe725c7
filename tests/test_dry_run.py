import yaml

from conftest import tiny_recipe
from gemfactory.cli import main


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
    assert "per device over 2 device(s), no ZeRO: " in out and "activations" in out and "s/step here" in out
    assert not (tmp_path / "run").exists()
