"""``gemfactory eval --out``: the record's fields, byte stability, the yes/no probe, one-line data errors."""
import json

import pytest

from gemfactory.cli import main
from gemfactory.eval import record as rec
from gemfactory.model.checkpoint import save_checkpoint


@pytest.fixture(scope="module")
def ckpt(tiny_built, tmp_path_factory):
    recipe, tok, model, _ = tiny_built
    run = tmp_path_factory.mktemp("evalrun") / "tiny-run"
    save_checkpoint(model, tok, run / "finetune" / "model",
                    recipe={"name": "tiny-zoo", "model": {"llm": {"name": "vicuna"}}})
    (run / "latest").write_text("finetune/model\n")
    return run


def _eval(ckpt, data, out, *extra):
    return main(["-q", "eval", str(ckpt), "--data", str(data), "--out", str(out), *extra])


def test_two_evals_give_identical_bytes_apart_from_the_timestamp(ckpt, tiny_data, tmp_path):
    data = tiny_data / "test.json"
    for out in ("a", "b"):
        assert _eval(ckpt, data, tmp_path / out, "--task", "synthetic", "--limit", "4", "--seed", "3") == 0
    a, b = ((tmp_path / out / "tiny-run-synthetic.json").read_text() for out in ("a", "b"))
    strip = lambda text: "\n".join(line for line in text.splitlines() if not line.startswith(' "created"'))
    assert strip(a) == strip(b) and a.count('"created"') == 1
    record = json.loads(a)
    assert record["model"]["config_sha256"] == rec.sha256(ckpt / "finetune" / "model" / "config.json")
    assert record["model"]["components"] == {"llm": "vicuna", "vision": "clip", "ecg": "vit1d",
                                             "connector": "ecg:linear/image:mlp2x_gelu", "recipe": "tiny-zoo"}
    assert record["recipe"]["name"] == "tiny-zoo"
    assert record["data"]["sha256"] == rec.sha256(data) and record["seed"] == 3
    assert set(record["versions"]) == {"gemfactory", "torch", "transformers"}
    assert len(record["samples"]) == 4
    assert set(record["samples"][0]) >= {"id", "prompt", "prediction", "parsed", "reference"}
    assert list(json.loads(a)) == sorted(json.loads(a))  # sorted keys
    assert not list((tmp_path / "a").glob(".*tmp*"))  # the temp file is gone


def test_floats_are_rounded_and_keys_sorted():
    text = rec.dumps({"b": 1 / 3, "a": [-0.0000001, {"z": 2.0, "y": 0.1234567}]})
    assert text == '{\n "a": [\n  0.0,\n  {\n   "y": 0.123457,\n   "z": 2.0\n  }\n ],\n "b": 0.333333\n}\n'


def test_multilabel_records_yes_probabilities(ckpt, tiny_data, tmp_path):
    items = [i for i in json.loads((tiny_data / "test.json").read_text()) if i.get("ecg")][:3]
    for item, labels in zip(items, (["MI"], ["NORM"], ["MI", "CD"])):
        item["labels"] = labels
    data = tmp_path / "ml.json"
    data.write_text(json.dumps(items))
    assert _eval(ckpt, data, tmp_path, "--task", "multilabel", "--ecg-folder", str(tiny_data / "ecg"),
                 "--image-folder", str(tiny_data / "images"),
                 "--task-option", "labels=NORM,MI,CD") == 0
    record = json.loads((tmp_path / "tiny-run-multilabel.json").read_text())
    assert record["metrics"]["auc_source"] == "yes_probability"
    assert record["task_options"] == {"labels": "NORM,MI,CD"}
    for sample in record["samples"]:
        assert set(sample["scores"]) == {"NORM", "MI", "CD"}
        assert all(0.0 <= p <= 1.0 for p in sample["scores"].values())


@pytest.mark.parametrize("task, patch, message", [
    ("multilabel", {}, "eval item {id}: no 'labels' field"),
    ("multilabel", {"labels": ["MI", "AFIB"]}, "eval item {id}: label 'AFIB' is not in the task's label set"),
    ("pope", {"label": "maybe"}, "eval item {id}: label 'maybe' is not 'yes' or 'no'"),
    ("multiple_choice", {"options": ["x", "y"], "label": "C"}, "eval item {id}: label 'C' is not one of"),
])
def test_malformed_eval_file_is_one_line_naming_the_item(ckpt, tiny_data, tmp_path, capsys, task, patch, message):
    items = json.loads((tiny_data / "test.json").read_text())[:3]
    good = {"labels": ["MI"], "label": "A" if task == "multiple_choice" else "yes", "options": ["x", "y"]}
    items = [{k: v for k, v in i.items() if k != "label"} | good for i in items]
    items[1] = {k: v for k, v in items[1].items() if k not in ("labels", "label")} | patch
    data = tmp_path / "bad.json"
    data.write_text(json.dumps(items))
    assert _eval(ckpt, data, tmp_path, "--task", task) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message.format(id=items[1]["id"]) in err[0], err
