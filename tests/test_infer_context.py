"""LLaVA-Graph caption/OCR context at inference (chat, eval): the prompt equals the training prompt."""
import json

import pytest

from gemfactory.cli import main
from gemfactory.data.context import apply_context, context_from_flags
from gemfactory.template.base import normalize_conversation

CAPTION = "Figure 2: twelve-lead ECG of a patient at rest.\nLeads I-III on top."
OCR = "25 mm/s 10 mm/mV"
QUESTION = "Classify the heart rate of this ECG."


@pytest.fixture(scope="module")
def checkpoint(tiny_built, tmp_path_factory):
    from gemfactory.model.checkpoint import save_checkpoint

    recipe, tok, model, _ = tiny_built
    return save_checkpoint(model, tok, tmp_path_factory.mktemp("ctx-ckpt") / "model", recipe.to_dict())


@pytest.fixture(scope="module")
def record(tiny_data) -> str:
    item = next(i for i in json.loads((tiny_data / "test.json").read_text()) if i.get("ecg"))
    return item["ecg"]


def training_item(record, context) -> dict:
    return {"id": "t0", "ecg": record, "context": context, "conversations": [
        {"from": "human", "value": "<ecg>\n" + QUESTION},
        {"from": "gpt", "value": "Normal sinus rhythm: the heart rate is between 60 and 100 beats per minute."}]}


def captured_chat_prompt(monkeypatch, argv) -> object:
    from gemfactory.infer import chat

    seen = []

    def fake_stream(loaded, prompt, settings):
        seen.append(prompt)
        yield "answer"

    monkeypatch.setattr(chat, "stream", fake_stream)
    assert main(["-q", "chat", *argv]) == 0
    assert len(seen) == 1
    return seen[0]


def test_chat_context_tokens_are_the_training_prompt(checkpoint, tiny_data, record, monkeypatch, tmp_path):
    from gemfactory.data.processor import IGNORE_INDEX
    from gemfactory.infer.generate import features
    from gemfactory.infer.load import load_pretrained_model

    ecg = tiny_data / "ecg" / record
    by_flags = captured_chat_prompt(monkeypatch, [str(checkpoint), QUESTION, "--ecg", str(ecg),
                                                  "--caption", CAPTION, "--ocr", OCR])
    context_file = tmp_path / "context.json"
    context_file.write_text(json.dumps({"caption": CAPTION, "ocr": OCR}))
    by_file = captured_chat_prompt(monkeypatch, [str(checkpoint), QUESTION, "--ecg", str(ecg),
                                                 "--context", str(context_file)])
    item = training_item(record, {"caption": CAPTION, "ocr": OCR})
    trained_turns = apply_context(normalize_conversation(item["conversations"]), item["context"])
    assert by_flags.turns == by_file.turns == trained_turns[:1]
    assert by_flags.turns[0].text == f"<ecg>\nCaption: {CAPTION}\nOCR: {OCR}\n{QUESTION}"

    loaded = load_pretrained_model(checkpoint)
    trained = loaded.processor.sample(item, ecg_folder=tiny_data / "ecg")
    asked = features(loaded, by_flags)["input_ids"].tolist()
    assert trained["input_ids"].tolist()[:len(asked)] == asked  # the model sees the tokens it trained on
    assert set(trained["labels"].tolist()[:len(asked)]) == {IGNORE_INDEX}  # ... all of them prompt, unsupervised


def test_chat_context_is_only_in_the_first_question(checkpoint, tiny_data, record):
    from gemfactory.infer.chat import ChatSession
    from gemfactory.infer.generate import GenerationSettings
    from gemfactory.infer.load import load_pretrained_model

    session = ChatSession(load_pretrained_model(checkpoint), GenerationSettings(2), ecg=str(tiny_data / "ecg" / record),
                          context={"ocr": OCR})
    session.ask(QUESTION)
    session.ask("And the rhythm?")
    assert [t.text for t in session.turns if t.role == "user"] == [f"<ecg>\nOCR: {OCR}\n{QUESTION}", "And the rhythm?"]


def test_eval_context_flags_fill_items_without_their_own(checkpoint, tiny_data, record, tmp_path):
    own = {"caption": "An item's own caption."}
    items = [{**training_item(record, own), "id": "own", "task": "heart_rate", "label": "normal"},
             {**training_item(record, None), "id": "plain", "task": "heart_rate", "label": "normal"}]
    del items[1]["context"]
    data = tmp_path / "items.json"
    data.write_text(json.dumps(items))
    assert main(["-q", "eval", str(checkpoint), "--task", "synthetic", "--data", str(data),
                 "--ecg-folder", str(tiny_data / "ecg"), "--caption", CAPTION, "--out", str(tmp_path)]) == 0
    written = json.loads(next(tmp_path.glob("*-synthetic.json")).read_text())
    prompts = {s["id"]: s["prompt"] for s in written["samples"]}
    assert prompts == {"own": f"<ecg>\nCaption: {own['caption']}\n{QUESTION}",
                       "plain": f"<ecg>\nCaption: {CAPTION}\n{QUESTION}"}


@pytest.mark.parametrize("flags, message", [
    (["--context", "nowhere.json"], "error: --context nowhere.json: cannot read it (No such file or directory)"),
    (["--caption", "has <image> in it"], "error: sample --caption/--ocr: context.caption must not contain"),
])
@pytest.mark.parametrize("command", ["chat", "eval"])
def test_bad_context_flags_are_one_line_errors(checkpoint, capsys, flags, message, command):
    args = [QUESTION] if command == "chat" else ["--task", "synthetic", "--data", "x.json"]
    assert main(["-q", command, str(checkpoint), *args, *flags]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(message), err


def test_context_file_and_flag_for_the_same_key_is_refused(tmp_path):
    from gemfactory.errors import DataError

    path = tmp_path / "c.json"
    path.write_text(json.dumps({"caption": "a"}))
    assert context_from_flags(None, "o", path) == {"caption": "a", "ocr": "o"}
    with pytest.raises(DataError, match=r"^--caption and --context .* both give the caption; give it once$"):
        context_from_flags("b", None, path)
    path.write_text("[1]")
    with pytest.raises(DataError, match="'context' must be an object"):
        context_from_flags(None, None, path)
    assert context_from_flags() is None
