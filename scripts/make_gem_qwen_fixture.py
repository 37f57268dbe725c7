"""Regenerate tests/data/gem_qwen_golden.json by running GEM's own Qwen conversation code.

From a bare git mirror of lanxiang1017/GEM (``--mirror``) at SEED_COMMIT this script imports
``llava/conversation.py`` as it is (``conv_qwen``, the ``qwen_2`` version of GEM's Qwen recipes)
and takes ``preprocess_qwen`` out of ``llava/train/train.py`` with ``ast``; it runs on the names it
uses (copy, torch, transformers, ``IGNORE_INDEX`` / ``IMAGE_TOKEN_INDEX`` of ``llava/constants.py``).

The tokenizer is a tiny Qwen-like byte-level BPE built here: its 256 byte symbols first, so the
newline symbol gets id 198 as in Qwen's vocabulary (``preprocess_qwen`` hard-codes 198), then
``<|endoftext|>``, ``<|im_start|>``, ``<|im_end|>``. Two shims adapt transformers 5 to the 4.x API
the seed was written against, changing no output: ``additional_special_tokens_ids`` (removed in 5)
answers ``[<|im_start|>, <|im_end|>]``, and ``apply_chat_template`` returns the id list (5 returns
a dict by default). The fixture holds the vocabulary and merges, GEM's prompts and
``preprocess_qwen``'s ids and labels.

    python scripts/make_gem_qwen_fixture.py --mirror /work/.mirror/lanxiang1017+GEM/repo
"""
from __future__ import annotations

import argparse
import ast
import copy
import json
import typing
from pathlib import Path

import seed_code

SEED_REPO = "lanxiang1017/GEM"
SEED_COMMIT = "c8a580faae819c57c008e94fa080f5d3c6881769"
OUT = Path(__file__).resolve().parent.parent / "tests" / "data" / "gem_qwen_golden.json"
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CONVERSATIONS = [
    [("human", "<image>\nWhat is shown in the picture?"), ("gpt", "A red bicycle leaning on a wall.")],
    [("human", "Hello there"), ("gpt", "Hi! How can I help?\nAsk away."),
     ("human", "Count to three."), ("gpt", "1, 2, 3.")],
]


def git_show(mirror: str, path: str) -> str:
    return seed_code.git_show(mirror, SEED_COMMIT, path)


def load_seed(mirror: str):
    import torch
    import transformers

    conversation_lib = seed_code.import_seed_file(mirror, SEED_COMMIT, "llava/conversation.py", "gem_seed_conversation")
    constants = seed_code.seed_constants(mirror, SEED_COMMIT)
    train = git_show(mirror, "llava/train/train.py")
    node = next(n for n in ast.parse(train).body if isinstance(n, ast.FunctionDef) and n.name == "preprocess_qwen")
    names = {"copy": copy, "torch": torch, "transformers": transformers, "Dict": typing.Dict,
             "IGNORE_INDEX": constants["IGNORE_INDEX"], "IMAGE_TOKEN_INDEX": constants["IMAGE_TOKEN_INDEX"]}
    exec(ast.get_source_segment(train, node), names)
    return conversation_lib, names["preprocess_qwen"]


def train_vocab() -> tuple[dict, list]:
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    texts = [text for conv in CONVERSATIONS for _, text in conv] * 3 + ["system user assistant You are a helpful assistant."]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=500, special_tokens=[], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator(texts, trainer=trainer)
    state = json.loads(bpe.to_str())["model"]
    assert state["vocab"]["\u010a"] == 198, "the newline symbol must have Qwen's id 198"
    return state["vocab"], [m if isinstance(m, str) else " ".join(m) for m in state["merges"]]


def qwen_like(vocab: dict, merges: list, seed_api: bool = False):
    """The tiny tokenizer; ``seed_api``: with the two transformers-4.x shims the seed needs."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE(vocab=dict(vocab), merges=[tuple(m.split(" ")) for m in merges]))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()

    class SeedAPI(PreTrainedTokenizerFast):
        @property
        def additional_special_tokens_ids(self):
            return self.convert_tokens_to_ids(["<|im_start|>", "<|im_end|>"])

        def apply_chat_template(self, conversation, **kwargs):
            return list(super().apply_chat_template(conversation, return_dict=False, **kwargs))

    cls = SeedAPI if seed_api else PreTrainedTokenizerFast
    tok = cls(tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    tok.add_special_tokens({"additional_special_tokens": SPECIALS}, replace_extra_special_tokens=False)
    assert min(tok.convert_tokens_to_ids(SPECIALS)) >= len(vocab)  # after the BPE vocabulary, as in Qwen
    return tok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mirror", required=True, help="bare git dir of lanxiang1017/GEM")
    args = parser.parse_args()
    conversation_lib, preprocess_qwen = load_seed(args.mirror)
    vocab, merges = train_vocab()
    tok = qwen_like(vocab, merges, seed_api=True)
    cases = []
    for turns in CONVERSATIONS:
        full, gen = conversation_lib.conv_qwen.copy(), conversation_lib.conv_qwen.copy()
        full.messages, gen.messages = [], []
        for who, text in turns:
            full.append_message(full.roles[0] if who == "human" else full.roles[1], text)
        for who, text in turns[:-1]:
            gen.append_message(gen.roles[0] if who == "human" else gen.roles[1], text)
        gen.append_message(gen.roles[1], None)
        has_image = any("<image>" in text for _, text in turns)
        out = preprocess_qwen([[{"from": who, "value": text} for who, text in turns]], tok, has_image=has_image)
        cases.append({"turns": [list(t) for t in turns], "prompt": full.get_prompt(),
                      "generation_prompt": gen.get_prompt(),
                      "input_ids": out["input_ids"][0].tolist(), "labels": out["labels"][0].tolist()})
    payload = {"seed": f"{SEED_REPO}@{SEED_COMMIT}", "vocab": vocab, "merges": merges, "cases": cases}
    tmp = OUT.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload, ensure_ascii=False, indent=0) + "\n", encoding="utf-8")
    tmp.replace(OUT)
    print(f"wrote {OUT}: {len(cases)} cases, vocab {len(vocab)}")


if __name__ == "__main__":
    main()
