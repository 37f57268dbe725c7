"""Every chat template supervises exactly the replies; every LLM family builds, trains and writes BOS right.

Templates are taken from the registry, so a new one is covered as soon as it is registered; each is
paired with the families whose default it is (``vicuna`` when none), and the family's own special
tokens are used. Where an official HF chat template exists, a Jinja template written here from the
published format must render the same text as the gemfactory template.
"""
from __future__ import annotations

import functools

import pytest
import torch

from gemfactory.registry import LLMS, TEMPLATES
from gemfactory.template.base import IGNORE_INDEX, PLACEHOLDERS, SpecialText, Turn

SYSTEM = Turn("system", "You read electrocardiograms.")
CONVERSATION = [
    Turn("user", "<ecg>\nWhat is the rhythm of this ECG?"),
    Turn("assistant", "Sinus rhythm at 72 beats per minute."),
    # a placeholder here too, so that the `plain` template keeps something between the replies
    Turn("user", "<image>\nIs it normal?"),
    Turn("assistant", "Yes, the rate is normal."),
]
REPLIES = [t.text for t in CONVERSATION if t.role == "assistant"]
TOKENIZER_TEXTS = [t.text for t in CONVERSATION + [SYSTEM]] * 4 + [
    "USER: ASSISTANT: system user assistant model You are a helpful assistant."]


def _template_family_pairs():
    defaults = {name: LLMS.get(name).default_template for name in LLMS.names()}
    for template in TEMPLATES.names():
        for family in [f for f, d in defaults.items() if d == template] or ["vicuna"]:
            yield template, family


@functools.lru_cache(maxsize=None)
def family_tokenizer(family: str):
    return LLMS.get(family)().train_tokenizer(TOKENIZER_TEXTS, 400)


def supervised_runs(tok, enc) -> list[str]:
    """Decoded runs of consecutive supervised tokens."""
    runs, cur = [], []
    for i, label in zip(enc.input_ids + [None], enc.labels + [IGNORE_INDEX]):
        if label != IGNORE_INDEX:
            assert label == i, "a supervised label must be the token itself"
            cur.append(i)
        elif cur:
            runs.append(tok.decode(cur))
            cur = []
    return runs


@pytest.mark.parametrize("system", [False, True], ids=["no-system", "system"])
@pytest.mark.parametrize("template_name,family", list(_template_family_pairs()))
def test_template_supervises_exactly_replies_and_turn_end(template_name, family, system):
    tok = family_tokenizer(family)
    template = TEMPLATES.get(template_name)()
    turns = ([SYSTEM] if system else []) + CONVERSATION
    enc = template.encode(turns, tok)
    assert tok.decode(enc.input_ids) == enc.text, "tokenization must round-trip"
    end = template.stop_strings(SpecialText.of(tok))[0]

    runs = supervised_runs(tok, enc)
    assert len(runs) == len(REPLIES), runs
    for run, reply in zip(runs, REPLIES):
        # Vicuna-style templates put the space after "ASSISTANT:" in the reply; no other prefix
        assert run in (reply + end, " " + reply + end), (run, reply + end)

    if end in tok.all_special_tokens:  # the end marker is one supervised token
        end_id = tok.convert_tokens_to_ids(end)
        sup = [i for i, label in zip(enc.input_ids, enc.labels) if label != IGNORE_INDEX]
        assert sup.count(end_id) == len(REPLIES)
    for placeholder in PLACEHOLDERS:
        pid = tok.convert_tokens_to_ids(placeholder)
        assert pid in enc.input_ids
        assert all(label == IGNORE_INDEX for i, label in zip(enc.input_ids, enc.labels) if i == pid)
    # everything else -- BOS, system text, questions, role markers -- is prompt
    prompt = tok.decode([i for i, label in zip(enc.input_ids, enc.labels) if label == IGNORE_INDEX])
    for reply in REPLIES:
        assert reply not in prompt
    if template_name != "plain":  # plain drops the instructions on purpose
        assert "What is the rhythm of this ECG?" in prompt and "Is it normal?" in prompt
        if system:
            assert SYSTEM.text in prompt
    if tok.bos_token and template.add_bos:
        assert enc.input_ids[0] == tok.bos_token_id and enc.labels[0] == IGNORE_INDEX


@pytest.mark.parametrize("template_name,family", list(_template_family_pairs()))
def test_stop_strings_are_single_tokens_and_generation_prompt_adds_no_supervision(template_name, family):
    tok = family_tokenizer(family)
    template = TEMPLATES.get(template_name)()
    for stop in template.stop_strings(SpecialText.of(tok)):
        if stop in tok.all_special_tokens:
            assert tok.convert_tokens_to_ids(stop) != tok.unk_token_id
            assert tok.tokenize(stop) == [stop]
    # the generation prompt only appends prompt text: the supervised tokens stay the same
    plain_enc = template.encode(CONVERSATION[:3], tok)
    gen_enc = template.encode(CONVERSATION[:3], tok, add_generation_prompt=True)
    assert gen_enc.text.startswith(plain_enc.text)
    assert supervised_runs(tok, gen_enc) == supervised_runs(tok, plain_enc)


# Jinja chat templates reproducing the published formats, written for this test ------------------

LLAMA3_JINJA = (
    "{{ bos_token }}"
    "{% for m in messages %}"
    "{{ '<|start_header_id|>' ~ m.role ~ '<|end_header_id|>\\n\\n' ~ (m.content | trim) ~ '<|eot_id|>' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"
)
CHATML_JINJA = (
    "{% if messages[0].role != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}"
    "{% endif %}"
    "{% for m in messages %}{{ '<|im_start|>' ~ m.role ~ '\\n' ~ m.content ~ '<|im_end|>\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
GEMMA_JINJA = (
    "{{ bos_token }}"
    "{% if messages[0].role == 'system' %}"
    "{% set preamble = (messages[0].content | trim) ~ '\\n\\n' if messages[0].content | trim else '' %}"
    "{% set chat = messages[1:] %}"
    "{% else %}{% set preamble = '' %}{% set chat = messages %}{% endif %}"
    "{% for m in chat %}"
    "{% set role = 'model' if m.role == 'assistant' else m.role %}"
    "{{ '<start_of_turn>' ~ role ~ '\\n' ~ (preamble if loop.first else '') ~ (m.content | trim)"
    " ~ '<end_of_turn>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\\n' }}{% endif %}"
)
HF_FORMATS = {"llama3": ("llama3", LLAMA3_JINJA), "chatml": ("qwen2", CHATML_JINJA),
              "gemma": ("gemma", GEMMA_JINJA)}


def _messages(turns):
    return [{"role": t.role, "content": t.text} for t in turns]


@pytest.mark.parametrize("system", [None, SYSTEM, Turn("system", "")], ids=["no-system", "system", "empty-system"])
@pytest.mark.parametrize("template_name", sorted(HF_FORMATS))
def test_render_matches_hf_chat_template(template_name, system):
    family, jinja = HF_FORMATS[template_name]
    tok = LLMS.get(family)().train_tokenizer(TOKENIZER_TEXTS, 400)
    tok.chat_template = jinja
    template = TEMPLATES.get(template_name)()
    head = [system] if system else []
    for turns in (head + CONVERSATION[:1], head + CONVERSATION[:3]):
        expected = tok.apply_chat_template(_messages(turns), tokenize=False, add_generation_prompt=True)
        assert template.render_prompt(turns, tok, add_generation_prompt=True) == expected
    turns = head + CONVERSATION
    expected = tok.apply_chat_template(_messages(turns), tokenize=False, add_generation_prompt=False)
    assert template.render_prompt(turns, tok, add_generation_prompt=False) == expected
    assert template.encode(turns, tok).text == expected
    with pytest.raises(ValueError, match="end with a user turn"):
        template.render_prompt(turns, tok, add_generation_prompt=True)


def test_hf_formats_are_registered_templates():
    assert set(HF_FORMATS) <= set(TEMPLATES.names())


# LLM families -------------------------------------------------------------------------------------

@pytest.mark.parametrize("family_name", LLMS.names())
def test_family_builds_trains_a_step_and_writes_bos_as_declared(family_name, tiny_data):
    from conftest import tiny_recipe
    from gemfactory.config import recipe_from_dict
    from gemfactory.data.dataset import Collator, GemDataset
    from gemfactory.data.processor import Processor
    from gemfactory.model.builder import build_model, build_tokenizer
    from gemfactory.data.recipe_tokenizer import tokenizer_texts as _tokenizer_texts

    family = LLMS.get(family_name)()
    raw = tiny_recipe(tiny_data, tiny_data / f"runs-{family_name}")
    raw["model"]["llm"] = {"name": family_name, "tokenizer_vocab_size": 400}  # the family's tiny_arch
    raw["model"]["template"] = None
    recipe = recipe_from_dict(raw)
    template = TEMPLATES.get(family.default_template)()
    torch.manual_seed(0)
    tok = build_tokenizer(recipe.model, _tokenizer_texts(recipe, template))
    model = build_model(recipe.model, tok)
    assert model.config.template == family.default_template
    assert model.config.text_config.model_type == family.model_type
    assert tok.pad_token is not None
    for marker in family.extra_special_tokens:
        assert tok.tokenize(marker) == [marker], marker

    proc = Processor.from_model(model, tok, template, 256)
    ds = GemDataset(recipe.data.train, proc, recipe.data.image_folder, recipe.data.ecg_folder)
    feats = [ds[i] for i in range(3)]
    for f in feats:
        ids = f["input_ids"].tolist()
        if family.has_bos:
            assert ids[0] == tok.bos_token_id and ids.count(tok.bos_token_id) == 1
        else:
            assert tok.bos_token is None or tok.bos_token_id not in ids
    batch = Collator(tok.pad_token_id)(feats)
    out = model(**batch)
    assert torch.isfinite(out.loss)
    out.loss.backward()
    grad = model.get_input_embeddings().weight.grad
    assert grad is not None and torch.isfinite(grad).all()
