"""``gemfactory train`` ships a few held-out records in RUN/examples; ``gemfactory app`` offers them."""
import json
from pathlib import Path

import yaml
from conftest import tiny_recipe

from gemfactory.app.launch import examples_folder
from gemfactory.app.uploads import example_records
from gemfactory.cli import main
from gemfactory.config import recipe_from_dict
from gemfactory.train.examples import copy_examples


def eval_records(tiny_data) -> dict[str, str]:
    """ECG record -> label of the held-out items, in file order."""
    out = {}
    for item in json.loads((tiny_data / "test.json").read_text()):
        if item.get("ecg"):
            out.setdefault(item["ecg"], item["label"])
    return out


def test_one_held_out_record_per_label_is_copied_whole(tiny_data, tmp_path):
    recipe = recipe_from_dict({**tiny_recipe(tiny_data, tmp_path), "data": {
        **tiny_recipe(tiny_data, tmp_path)["data"], "eval": str(tiny_data / "test.json")}})
    shipped = copy_examples(recipe.data, tmp_path)
    held_out = eval_records(tiny_data)
    train_records = {i.get("ecg") for i in json.loads((tiny_data / "train.json").read_text())}
    assert len(shipped) == 3 and set(shipped) <= set(held_out) and not set(shipped) & train_records
    assert sorted(held_out[name] for name in shipped) == ["bradycardia", "normal", "tachycardia"]
    records = example_records(tmp_path / "examples")
    assert sorted(records) == sorted(shipped)
    for name, files in records.items():
        assert [f.name for f in files] == [f"{name}.dat", f"{name}.hea"]
        for f in files:
            assert f.read_bytes() == (tiny_data / "ecg" / f.name).read_bytes()
    assert examples_folder(tmp_path, None) == tmp_path / "examples"


def test_no_eval_data_ships_no_examples(tiny_data, tmp_path):
    assert copy_examples(recipe_from_dict(tiny_recipe(tiny_data, tmp_path)).data, tmp_path) == []
    assert not (tmp_path / "examples").exists() and examples_folder(tmp_path, None) is None


def test_train_command_copies_them_and_the_app_finds_them_from_the_model_folder(tiny_data, tmp_path, monkeypatch,
                                                                                capsys):
    from gemfactory.train import trainer

    model_dir = tmp_path / "run" / "finetune" / "model"
    model_dir.mkdir(parents=True)
    (model_dir / "config.json").write_text("{}")
    monkeypatch.setattr(trainer, "train", lambda recipe, resume=None: model_dir)  # the copying, not training
    raw = tiny_recipe(tiny_data, tmp_path / "run")
    raw["data"]["eval"] = str(tiny_data / "test.json")
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(yaml.safe_dump(raw))
    assert main(["-q", "train", str(recipe)]) == 0
    assert f"example records copied to {tmp_path / 'run' / 'examples'}: " in capsys.readouterr().out
    assert examples_folder(model_dir, None) == tmp_path / "run" / "examples"
    assert len(list(Path(tmp_path / "run" / "examples").glob("*.hea"))) == 3
