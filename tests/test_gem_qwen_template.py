"""``chatml`` against GEM's own Qwen conversation (``conv_qwen`` + ``preprocess_qwen``).

``tests/data/gem_qwen_golden.json`` was written by ``scripts/make_gem_qwen_fixture.py``, which runs
GEM's ``llava/conversation.py`` and ``preprocess_qwen`` (commit recorded in the file) with a tiny
Qwen-like tokenizer (vocabulary and merges in the file). Text and ids are the same; the supervised
tokens differ on purpose (docs/seeds.md): GEM also trains every ``<|im_start|>``, ``<|im_end|>`` and
newline token (id 198) of the whole prompt and each ``<|im_start|>assistant\\n`` header and the
newline after a reply; gemfactory trains each reply and its ``<|im_end|>`` only. The test pins
that difference exactly.
"""
import json
from pathlib import Path

import pytest

from gemfactory.registry import TEMPLATES
from gemfactory.template.base import IGNORE_INDEX, normalize_conversation

GOLDEN = json.loads((Path(__file__).parent / "data" / "gem_qwen_golden.json").read_text("utf-8"))
LLAVA_IMAGE_INDEX = -200
HEADER = "<|im_start|>assistant\n"


@pytest.fixture(scope="module")
def tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE(vocab=dict(GOLDEN["vocab"]), merges=[tuple(m.split(" ")) for m in GOLDEN["merges"]]))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    tok.add_special_tokens({"additional_special_tokens": ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>",
                                                         "<ecg>"]}, replace_extra_special_tokens=False)
    return tok


def test_fixture_comes_from_the_seed():
    assert GOLDEN["seed"].startswith("lanxiang1017/GEM@") and len(GOLDEN["seed"].split("@")[1]) == 40


@pytest.mark.parametrize("case", GOLDEN["cases"], ids=lambda c: f"{len(c['turns']) // 2}turns")
def test_chatml_renders_gems_conv_qwen(case, tokenizer):
    template = TEMPLATES.get("chatml")()
    turns = normalize_conversation([{"from": who, "value": text} for who, text in case["turns"]])
    enc = template.encode(turns, tokenizer)
    assert enc.text == case["prompt"]
    assert template.render_prompt(turns[:-1], tokenizer) == case["generation_prompt"]
    image = tokenizer.convert_tokens_to_ids("<image>")
    assert [LLAVA_IMAGE_INDEX if i == image else i for i in enc.input_ids] == case["input_ids"]


@pytest.mark.parametrize("case", GOLDEN["cases"], ids=lambda c: f"{len(c['turns']) // 2}turns")
def test_supervision_differs_from_gems_only_by_structure_tokens(case, tokenizer):
    template = TEMPLATES.get("chatml")()
    turns = normalize_conversation([{"from": who, "value": text} for who, text in case["turns"]])
    enc = template.encode(turns, tokenizer)
    ours = {i for i, label in enumerate(enc.labels) if label != IGNORE_INDEX}
    theirs = {i for i, label in enumerate(case["labels"]) if label != IGNORE_INDEX}
    assert ours < theirs
    structure = set(tokenizer.convert_tokens_to_ids(["<|im_start|>", "<|im_end|>"])) | {198}
    offsets = tokenizer(enc.text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    headers = [(k, k + len(HEADER)) for k in range(len(enc.text)) if enc.text.startswith(HEADER, k)]
    replies_end = [b for a, b in enc.spans]  # a reply's newline: the character right after its <|im_end|>
    for i in sorted(theirs - ours):
        a, b = offsets[i]
        in_header = any(h0 <= a and b <= h1 for h0, h1 in headers)
        assert enc.input_ids[i] in structure or in_header or a in replies_end, (i, enc.text[a:b])
