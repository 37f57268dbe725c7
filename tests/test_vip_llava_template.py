"""``llava_v1`` against ViP-LLaVA's own prompt code (``tests/data/vip_llava_golden.json``, written by
``scripts/make_vip_llava_template_fixture.py`` from ViP-LLaVA's conversation.py, preprocess_v1 and
tokenizer_image_token with the tokenizers of ``llava_conversation_golden.json``)."""
import json
from pathlib import Path

import pytest

from gemfactory.registry import TEMPLATES
from gemfactory.template.base import normalize_conversation

DATA = Path(__file__).parent / "data"
VIP = json.loads((DATA / "vip_llava_golden.json").read_text("utf-8"))
LLAVA = json.loads((DATA / "llava_conversation_golden.json").read_text("utf-8"))


def test_fixture_comes_from_the_seed():
    assert VIP["seed"].startswith("mu-cai/ViP-LLaVA@") and len(VIP["seed"].split("@")[1]) == 40


@pytest.mark.parametrize("case", VIP["cases"], ids=lambda c: f"{len(c['turns']) // 2}turns")
def test_vip_llava_renders_and_masks_as_gemfactory(case):
    from transformers import LlamaTokenizer

    tok = LlamaTokenizer(vocab=dict(LLAVA["vocab"]), merges=[tuple(m.split(" ")) for m in LLAVA["merges"]],
                         legacy=True, add_bos_token=True)
    tok.add_special_tokens({"additional_special_tokens": ["<image>", "<ecg>"]})
    turns = normalize_conversation([{"from": who, "value": text} for who, text in case["turns"]])
    enc = TEMPLATES.get("llava_v1")().encode(turns, tok)
    image = tok.convert_tokens_to_ids("<image>")
    assert enc.text == tok.bos_token + case["prompt"]
    theirs = case["tokenized"]["legacy_true"]
    assert [-200 if i == image else i for i in enc.input_ids] == theirs["input_ids"]
    assert enc.labels == theirs["labels"]


def test_vip_llava_equals_llava_for_both_tokenizer_behaviours():
    """ViP-LLaVA's preprocess_v1 lacks LLaVA's later legacy=False correction, yet on these samples
    both give the same ids and labels (both drop the multi-turn samples for legacy=False)."""
    for case in VIP["cases"]:
        ref = next(c for c in LLAVA["cases"] if c["template"] == "llava_v1" and c["turns"] == case["turns"])
        assert case["prompt"] == ref["prompt"] and case["tokenized"] == ref["tokenized"]
