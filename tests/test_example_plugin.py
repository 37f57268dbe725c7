"""The example plugin, installed as a distribution: listed, trained through its recipe, conformant."""
import json
import math
from pathlib import Path

import pytest
from importlib_metadata import PackageNotFoundError, version

from gemfactory.cli import main
from gemfactory.config import load_recipe
from gemfactory.testing import assert_conforms

DIST = "gemfactory-example-plugin"
PLUGIN = Path(__file__).resolve().parents[1] / "plugins" / DIST
RECIPE = PLUGIN / "recipes" / "tiny-plugin.yaml"
COMPONENTS = [("ecg_encoders", "beat_lstm"), ("connectors", "pooled_linear"), ("templates", "alpaca")]

try:
    VERSION = version(DIST)
except PackageNotFoundError:
    pytestmark = pytest.mark.skip(
        reason=f"{DIST} is not installed: pip install -c constraints.txt -e ./plugins/{DIST}")


def test_list_plugins_shows_components_with_distribution_and_version(capsys):
    assert main(["-q", "list", "--plugins"]) == 0
    rows = {line.split()[0]: line.split()[1:3] for line in capsys.readouterr().out.splitlines()
            if line.startswith("  ")}
    for _, name in COMPONENTS:
        assert rows[name] == [DIST, VERSION]
    assert "vit1d" not in rows  # only what plugins add


def test_recipe_swaps_in_the_plugin_components():
    model = load_recipe(RECIPE).model
    assert (model.ecg.name, model.ecg.arch) == ("beat_lstm", {"width": 128, "layers": 1, "window_s": 0.8})
    assert (model.connectors["ecg"].name, model.connectors["ecg"].options) == ("pooled_linear", {"stride": 2})
    assert (model.template, model.llm.name, model.vision.name) == ("alpaca", "vicuna", "clip")


def test_plugin_recipe_trains_the_tiny_task(tiny_data, tmp_path):
    out = tmp_path / "run"
    assert main(["-q", "train", str(RECIPE), f"data.train={tiny_data / 'train.json'}",
                 f"data.eval={tiny_data / 'test.json'}", f"data.image_folder={tiny_data / 'images'}",
                 f"data.ecg_folder={tiny_data / 'ecg'}", f"training.output_dir={out}", "training.report_to=[]",
                 "training.logging_steps=1", "stages.finetune.max_steps=3", "stages.finetune.batch_size=4"]) == 0
    config = json.loads((out / "finetune" / "model" / "config.json").read_text())
    assert (config["ecg"]["name"], config["connectors"]["ecg"]["name"], config["template"]) == (
        "beat_lstm", "pooled_linear", "alpaca")
    losses = [row["loss"] for row in map(json.loads, (out / "finetune" / "metrics.jsonl").read_text().splitlines())
              if "loss" in row]
    assert len(losses) == 3 and all(math.isfinite(x) for x in losses)


@pytest.mark.parametrize(("kind", "name"), COMPONENTS)
def test_kit_passes_on_the_plugin_components(kind, name):
    assert_conforms(kind, name)
