import pytest

from gemfactory.errors import DataError
from gemfactory.llm.tokenizer import train_bpe_tokenizer
from gemfactory.registry import TEMPLATES
from gemfactory.template.base import IGNORE_INDEX, Turn, normalize_conversation
from gemfactory.template.check import check_sample

CONVERSATION = [
    Turn("user", "<ecg>\nWhat is the rhythm of this ECG?"),
    Turn("assistant", "Sinus rhythm at 72 beats per minute."),
    Turn("user", "Is it normal?"),
    Turn("assistant", "Yes, the rate is normal."),
]


@pytest.fixture(scope="module")
def llama_tok():
    texts = [t.text for t in CONVERSATION] * 5 + [TEMPLATES.get("vicuna_v1").system, "USER: ASSISTANT:"]
    tok = train_bpe_tokenizer(texts, 300, ["<unk>", "<s>", "</s>", "<pad>"])
    tok.add_special_tokens({"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>"})
    return tok


def supervised_pieces(tok, enc):
    """Decoded runs of consecutive supervised tokens."""
    runs, cur = [], []
    for i, label in zip(enc.input_ids, enc.labels):
        if label != IGNORE_INDEX:
            assert label == i
            cur.append(i)
        elif cur:
            runs.append(tok.decode(cur))
            cur = []
    if cur:
        runs.append(tok.decode(cur))
    return runs


def test_vicuna_supervises_exactly_replies_and_eos(llama_tok):
    tpl = TEMPLATES.get("vicuna_v1")()
    enc = tpl.encode(CONVERSATION, llama_tok)
    assert enc.input_ids[0] == llama_tok.bos_token_id
    assert supervised_pieces(llama_tok, enc) == [
        " Sinus rhythm at 72 beats per minute.</s>", " Yes, the rate is normal.</s>"]
    assert enc.text.endswith("USER: Is it normal? ASSISTANT: Yes, the rate is normal.</s>")
    # the placeholder survives as one special token
    assert llama_tok.convert_tokens_to_ids("<ecg>") in enc.input_ids


def test_vicuna_generation_prompt_ends_with_assistant_tag(llama_tok):
    tpl = TEMPLATES.get("vicuna_v1")()
    prompt = tpl.render_prompt(CONVERSATION[:1], llama_tok)
    assert prompt.endswith("USER: <ecg>\nWhat is the rhythm of this ECG? ASSISTANT:")
    assert prompt.startswith("<s>A chat between")


def test_plain_keeps_only_placeholders_and_caption(llama_tok):
    tpl = TEMPLATES.get("plain")()
    turns = [Turn("user", "<ecg>\nDescribe the ECG."), Turn("assistant", "Sinus rhythm.")]
    enc = tpl.encode(turns, llama_tok)
    assert enc.text == "<s><ecg>Sinus rhythm.\n"
    assert supervised_pieces(llama_tok, enc) == ["Sinus rhythm.\n"]


def test_phi_template_has_no_bos_and_ends_turns_with_endoftext():
    texts = [t.text for t in CONVERSATION] * 5
    tok = train_bpe_tokenizer(texts, 300, ["<|endoftext|>"])
    tok.add_special_tokens({"eos_token": "<|endoftext|>"})
    tpl = TEMPLATES.get("phi")()
    enc = tpl.encode(CONVERSATION, tok)
    assert not enc.text.startswith("<|endoftext|>")
    assert supervised_pieces(tok, enc)[0] == " Sinus rhythm at 72 beats per minute.<|endoftext|>"


def test_check_sample_marks_spans_and_fails_on_broken_template(llama_tok):
    tpl = TEMPLATES.get("vicuna_v1")()
    shown = check_sample(tpl, CONVERSATION, llama_tok)
    assert "\u27e6 Sinus rhythm at 72 beats per minute.</s>\u27e7" in shown

    class Broken(type(tpl)):
        def segments(self, turns, sp, add_generation_prompt):
            for text, _ in super().segments(turns, sp, add_generation_prompt):
                yield text, True  # supervises the prompt too

    with pytest.raises(DataError, match="outside the assistant replies is supervised"):
        check_sample(Broken(), CONVERSATION, llama_tok)
    with pytest.raises(DataError, match="no supervised token"):
        check_sample(tpl, CONVERSATION[:1], llama_tok)


def test_conversation_normalisation_and_errors():
    turns = normalize_conversation([{"from": "human", "value": "q"}, {"role": "assistant", "content": "a"}])
    assert [t.role for t in turns] == ["user", "assistant"]
    with pytest.raises(DataError, match="conversations\\[0\\].from: 'robot'"):
        normalize_conversation([{"from": "robot", "value": "q"}], "x1")
    with pytest.raises(DataError, match="sample x2: 'conversations' must be a non-empty list"):
        normalize_conversation([], "x2")


def test_turns_must_alternate(llama_tok):
    tpl = TEMPLATES.get("vicuna_v1")()
    with pytest.raises(DataError, match="turn 1: expected an assistant turn, got user"):
        tpl.encode([Turn("user", "a"), Turn("user", "b")], llama_tok)


def test_template_check_cli_fails_on_a_broken_sample(tiny_data, tmp_path, capsys):
    import json

    import yaml

    from conftest import tiny_recipe
    from gemfactory.cli import main

    items = json.loads((tiny_data / "train.json").read_text())[:2]
    items[1] = {"id": "broken-1", "conversations": [{"from": "human", "value": "Hello?"},
                                                     {"from": "gpt", "value": ""}]}
    data = tmp_path / "train.json"
    data.write_text(json.dumps(items))
    recipe = tiny_recipe(tiny_data, tmp_path / "run")
    recipe["data"]["train"] = str(data)
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(recipe))
    assert main(["-q", "template", "check", str(path), "--n", "2"]) == 2
    out, err = capsys.readouterr()
    assert "\u27e6" in out  # the good sample is shown with its supervised span marked
    assert "--- broken-1: FAILED: turn 1: empty assistant reply" in out
    assert err.strip() == "error: template vicuna_v1: 1 of 2 samples failed the check"


@pytest.mark.parametrize("name", sorted(TEMPLATES.names()))
def test_marker_text_holds_the_words_a_rendered_conversation_wraps_its_messages_in(name):
    from gemfactory.template.base import SpecialText

    template = TEMPLATES.get(name)()
    turns = [Turn("user", "q1"), Turn("assistant", "a1"), Turn("user", "q2")]
    rendered = "".join(text for text, _ in template.segments(turns, SpecialText(), True))
    around = rendered.replace("q1", " ").replace("a1", " ").replace("q2", " ").split()
    assert around == template.marker_text().split(), (around, template.marker_text())  # plain: none
