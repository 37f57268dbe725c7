"""The command line end to end on the tiny model: train -> checkpoint -> chat, and bad inputs."""
import json
import subprocess
import sys

import pytest
import yaml

from conftest import tiny_recipe
from gemfactory.cli import main


@pytest.fixture(scope="module")
def trained(tiny_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    recipe = tmp_path_factory.mktemp("recipes") / "tiny.yaml"
    recipe.write_text(yaml.safe_dump(tiny_recipe(tiny_data, out)))
    assert main(["-q", "train", str(recipe), "stages.finetune.max_steps=4"]) == 0
    return recipe, out


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def test_train_writes_a_loadable_checkpoint_and_latest_pointer(trained):
    _, out = trained
    assert (out / "latest").read_text().strip() == "finetune/model"
    model_dir = out / "finetune" / "model"
    for name in ("config.json", "model.safetensors", "tokenizer.json", "gemfactory_recipe.yaml"):
        assert (model_dir / name).is_file(), name
    config = json.loads((model_dir / "config.json").read_text())
    assert config["model_type"] == "gem" and config["ecg"]["signal"]["fs"] == 100.0


def test_chat_one_shot_answers_with_text(trained, tiny_data, capsys):
    _, out = trained
    item = next(i for i in json.loads((tiny_data / "test.json").read_text()) if i.get("ecg"))
    code = main(["-q", "chat", str(out), "--ecg", str(tiny_data / "ecg" / item["ecg"]),
                 "--max-new-tokens", "8", "What is the heart rate?"])
    assert code == 0
    answer = capsys.readouterr().out.strip()
    assert answer, "chat printed no answer"


def test_eval_reports_accuracy(trained, tiny_data, capsys, tmp_path):
    _, out = trained
    code = main(["-q", "eval", str(out), "--task", "synthetic", "--data", str(tiny_data / "test.json"),
                 "--limit", "6", "--out", str(tmp_path)])
    assert code == 0
    assert "synthetic: accuracy" in capsys.readouterr().out
    record = json.loads(next(tmp_path.glob("*.json")).read_text())
    assert record["metrics"]["n"] == 6 and len(record["samples"]) == 6


@pytest.mark.parametrize("override, message", [
    ("model.llm.nmae=x", "model.llm.nmae: unknown key (did you mean 'name'?)"),
    ("model.llm.name=vicuna2", "unknown LLM 'vicuna2'; did you mean 'vicuna'?"),
    ("model.connectors.image.name=mlp9", "unknown connector 'mlp9'"),
    ("data.train=/nonexistent/train.json", "data file not found: /nonexistent/train.json"),
    ("training.deepspeed=zero9", "training.deepspeed: 'zero9' is neither a bundled config"),
])
def test_bad_recipe_inputs_give_one_clear_line(trained, capsys, override, message):
    recipe, _ = trained
    assert main(["-q", "train", str(recipe), override]) == 2
    assert message in one_error_line(capsys)


def test_missing_and_corrupt_ecg_records(trained, tiny_data, capsys, tmp_path):
    _, out = trained
    assert main(["-q", "chat", str(out), "--ecg", str(tmp_path / "nope"), "hi"]) == 2
    assert "ECG record not found" in one_error_line(capsys)
    item = next(i for i in json.loads((tiny_data / "test.json").read_text()) if i.get("ecg"))
    for ext in (".hea", ".dat"):
        (tmp_path / f"bad{ext}").write_bytes((tiny_data / "ecg" / f"{item['ecg']}{ext}").read_bytes())
    dat = tmp_path / "bad.dat"
    dat.write_bytes(dat.read_bytes()[:100])
    assert main(["-q", "chat", str(out), "--ecg", str(tmp_path / "bad"), "hi"]) == 2
    assert "bad" in one_error_line(capsys)


@pytest.mark.parametrize("flags, message", [
    (["--dtype", "float8"], "error: dtype 'float8': expected one of float32, bfloat16, float16 (or fp32, bf16, fp16)"),
    (["--device", "gpu0"], "error: device 'gpu0': expected cpu, cuda, cuda:N, mps or auto"),
])
def test_chat_load_flags_are_checked_in_one_line(tmp_path, capsys, flags, message):
    assert main(["-q", "chat", str(tmp_path), *flags, "hi"]) == 2  # checked before any weight is read
    assert one_error_line(capsys) == message


def test_unmappable_lead_set_is_refused(trained, shared_data, capsys):
    _, out = trained
    # MIT-BIH record 100 has only MLII and V5: the 12-lead spec cannot be met
    assert main(["-q", "chat", str(out), "--ecg", str(shared_data / "100"), "hi"]) == 2
    line = one_error_line(capsys)
    assert "100" in line and "missing" in line.lower()


def test_cli_process_exit_code_and_no_traceback(tmp_path):
    bad = tmp_path / "r.yaml"
    bad.write_text("model:\n  llm:\n    name: vicuna\n  bogus: 1\n")
    proc = subprocess.run([sys.executable, "-m", "gemfactory.cli", "train", str(bad)],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip() == f"error: {bad}: model.bogus: unknown key; expected one of: " \
                                  "llm, vision, ecg, connectors, template, layout"


def test_list_shows_every_kind(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for kind in ("llms:", "vision_towers:", "ecg_encoders:", "connectors:", "templates:"):
        assert kind in out
    for name in ("vicuna", "phi", "clip", "vit1d", "linear", "mlp{N}x_gelu", "vicuna_v1", "plain"):
        assert f"  {name} " in out


def test_interactive_chat_handles_commands_and_turns(trained, tiny_data, monkeypatch, capsys):
    _, out = trained
    item = next(i for i in json.loads((tiny_data / "test.json").read_text()) if i.get("ecg"))
    lines = iter(["What is the rate?", "And the rhythm?", "/reset", "/ecg " + str(tiny_data / "ecg" / item["ecg"]),
                  "Again?", "/quit"])
    monkeypatch.setattr("builtins.input", lambda prompt="": next(lines))
    import gemfactory.infer.chat as chat

    sessions = []
    real = chat.ChatSession

    class Spy(real):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            sessions.append(self)

    monkeypatch.setattr(chat, "ChatSession", Spy)
    code = main(["-q", "chat", str(out), "--ecg", str(tiny_data / "ecg" / item["ecg"]), "--max-new-tokens", "4"])
    assert code == 0
    text = capsys.readouterr().out
    assert "conversation cleared" in text and "ecg set to" in text
    session = sessions[0]
    # after /ecg the conversation restarted: one question and one answer
    assert [t.role for t in session.turns] == ["user", "assistant"]
    assert session.turns[0].text.startswith("<ecg>\nAgain?")


def test_import_gemfactory_is_light_and_registers_auto_classes(trained):
    _, out = trained
    code = (
        "import sys, gemfactory\n"
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules\n"
        "from transformers import AutoModelForCausalLM\n"
        f"m = AutoModelForCausalLM.from_pretrained({str(out / 'finetune' / 'model')!r})\n"
        "print(type(m).__name__)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().endswith("GemForCausalLM")


def test_stage_leaves_metrics_log_and_loss_plot(trained):
    _, out = trained
    stage_dir = out / "finetune"
    records = [json.loads(line) for line in (stage_dir / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if "loss" in r]
    assert len(losses) == 4 and all(r["stage"] == "finetune" for r in records)  # logging_steps 1, 4 steps
    assert [r["step"] for r in records if "loss" in r] == [1, 2, 3, 4]
    png = (stage_dir / "loss.png").read_bytes()
    assert png.startswith(b"\x89PNG")
