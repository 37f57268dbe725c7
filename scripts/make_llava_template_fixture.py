"""Regenerate tests/data/llava_conversation_golden.json by running LLaVA's own prompt code.

From a bare git mirror of haotian-liu/LLaVA (``--mirror``, e.g. the one the ``fetch`` tool makes)
at SEED_COMMIT this script imports ``llava/conversation.py`` as it is, and takes the source of
``preprocess_v1`` (``llava/train/train.py``) and ``tokenizer_image_token`` (``llava/mm_utils.py``)
out of their files with ``ast`` -- the rest of those modules (model classes, trainer, deepspeed)
is not needed and not imported. The functions run on the names they use: torch, transformers,
``IGNORE_INDEX`` / ``IMAGE_TOKEN_INDEX`` from ``llava/constants.py`` and
``IS_TOKENIZER_GREATER_THAN_0_14`` computed as train.py computes it from the installed tokenizers.

The tokenizer is a tiny Llama-style one built here: a byte-fallback BPE with the ``▁`` metaspace,
trained on the conversations below, wrapped in transformers' ``LlamaTokenizer`` with ``legacy``
True (a ``▁`` is prepended to the text after every special token, as the original Llama / Vicuna
sentencepiece model does) and False (only at the very start). Its vocabulary and merges are stored
in the fixture, so the test rebuilds the same tokenizer.

For each conversation and each conversation template (``llava_v1``, ``vicuna_v1``) the fixture
holds LLaVA's rendered training prompt, its generation prompt (last assistant message None), and
for each tokenizer the input ids and labels ``preprocess_v1`` returns (``has_image`` when the
conversation has ``<image>``; LLaVA's image index -200 stays in the ids); and for two caption
samples, ``preprocess_plain``'s ids and labels (template ``plain``, LLaVA's stage-1 format). Usage:

    python scripts/make_llava_template_fixture.py --mirror /work/.mirror/haotian-liu+LLaVA/repo
"""
from __future__ import annotations

import argparse
import copy
import json
import typing
from pathlib import Path

import seed_code
from seed_code import function_source  # noqa: F401  (the ViP-LLaVA script imports it from here)

SEED_REPO = "haotian-liu/LLaVA"
SEED_COMMIT = "c121f0432da27facab705978f83c4ada465e46fd"
OUT = Path(__file__).resolve().parent.parent / "tests" / "data" / "llava_conversation_golden.json"
VOCAB_SIZE = 320

CONVERSATIONS = [
    [("human", "<image>\nWhat is shown in the picture?"), ("gpt", "A red bicycle leaning on a wall.")],
    [("human", "Hello there"), ("gpt", "Hi! How can I help?"),
     ("human", "Count to three."), ("gpt", "1, 2, 3.")],
    [("human", "<image>\nDescribe the ECG rhythm."), ("gpt", "Sinus rhythm at 72 bpm."),
     ("human", "Is the QRS wide?"), ("gpt", "\nNo: it is 90 ms, within normal limits."),
     ("human", "Any ST changes?"), ("gpt", "None seen \u2014 the ST segment is isoelectric.")],
    [("human", "Say nothing special."), ("gpt", "  Two leading spaces, then text.")],
]

CAPTIONS = [
    [("human", "<image>\nDescribe the image briefly."), ("gpt", "A red bicycle leaning on a wall.")],
    [("human", "Render a caption.\n<image>"), ("gpt", "Sinus rhythm at 72 bpm.")],
]


def git_show(mirror: str, path: str) -> str:
    return seed_code.git_show(mirror, SEED_COMMIT, path)


def load_seed(mirror: str):
    """(conversation module, preprocess_v1, preprocess_plain) of LLaVA at SEED_COMMIT."""
    import tokenizers
    import torch
    import transformers
    from packaging import version

    conversation_lib = seed_code.import_seed_file(mirror, SEED_COMMIT, "llava/conversation.py", "llava_seed_conversation")
    constants = seed_code.seed_constants(mirror, SEED_COMMIT)
    names = {
        "torch": torch, "transformers": transformers, "Dict": typing.Dict, "Sequence": typing.Sequence,
        "copy": copy, "DEFAULT_IMAGE_TOKEN": constants["DEFAULT_IMAGE_TOKEN"],
        "conversation_lib": conversation_lib,
        "IGNORE_INDEX": constants["IGNORE_INDEX"], "IMAGE_TOKEN_INDEX": constants["IMAGE_TOKEN_INDEX"],
        "IS_TOKENIZER_GREATER_THAN_0_14":
            version.parse(tokenizers.__version__) >= version.parse("0.14"),
    }
    exec(function_source(git_show(mirror, "llava/mm_utils.py"), "tokenizer_image_token"), names)
    train = git_show(mirror, "llava/train/train.py")
    exec(function_source(train, "preprocess_v1"), names)
    exec(function_source(train, "preprocess_plain"), names)
    return conversation_lib, names["preprocess_v1"], names["preprocess_plain"]


def train_vocab() -> tuple[dict, list]:
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    texts = [text for conv in CONVERSATIONS for _, text in conv]
    texts += ["A chat between a curious human and an artificial intelligence assistant.",
              "The assistant gives helpful, detailed, and polite answers to the user's questions.",
              "USER: ASSISTANT:"]
    bpe = Tokenizer(models.BPE(byte_fallback=True, unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always", split=True)
    alphabet = sorted({c for t in texts for c in t.replace(" ", "\u2581")} | {"\u2581"})
    byte_tokens = [f"<0x{b:02X}>" for b in range(256)]
    trainer = trainers.BpeTrainer(vocab_size=VOCAB_SIZE + 259, special_tokens=["<unk>", "<s>", "</s>", *byte_tokens],
                                  initial_alphabet=alphabet, show_progress=False)
    bpe.train_from_iterator(texts, trainer=trainer)
    state = json.loads(bpe.to_str())["model"]
    merges = [m if isinstance(m, str) else " ".join(m) for m in state["merges"]]
    return state["vocab"], merges


def llama_tokenizer(vocab: dict, merges: list, legacy: bool):
    from transformers import LlamaTokenizer

    tok = LlamaTokenizer(vocab=dict(vocab), merges=[tuple(m.split(" ")) for m in merges], legacy=legacy,
                         add_bos_token=True)  # Llama: BOS first, no EOS
    tok.pad_token = tok.unk_token  # as LLaVA's train.py sets it for v1
    tok.model_max_length = 2048
    return tok


def run_seed(conversation_lib, preprocess_v1, tokenizers: dict) -> list:
    cases = []
    for conv_name in ("llava_v1", "vicuna_v1"):
        for turns in CONVERSATIONS:
            conversation_lib.default_conversation = conversation_lib.conv_templates[conv_name]
            source = [{"from": who, "value": text} for who, text in turns]
            conv = conversation_lib.conv_templates[conv_name].copy()
            conv.messages = []
            for who, text in turns[:-1]:
                conv.append_message(conv.roles[0] if who == "human" else conv.roles[1], text)
            conv.append_message(conv.roles[1], None)
            case = {"template": conv_name, "turns": [list(t) for t in turns],
                    "generation_prompt": conv.get_prompt(), "tokenized": {}}
            has_image = any("<image>" in text for _, text in turns)
            for name, tok in tokenizers.items():
                out = preprocess_v1([source], tok, has_image=has_image)
                case["tokenized"][name] = {"input_ids": out["input_ids"][0].tolist(),
                                           "labels": out["labels"][0].tolist()}
            full = conversation_lib.conv_templates[conv_name].copy()
            full.messages = []
            for who, text in turns:
                full.append_message(full.roles[0] if who == "human" else full.roles[1], text)
            case["prompt"] = full.get_prompt()
            cases.append(case)
    return cases


def run_plain(conversation_lib, preprocess_plain, tokenizers: dict) -> list:
    """Stage-1 caption samples through ``preprocess_plain`` (LLaVA's ``--version plain``)."""
    conversation_lib.default_conversation = conversation_lib.conv_templates["plain"]
    cases = []
    for turns in CAPTIONS:
        case = {"template": "plain", "turns": [list(t) for t in turns], "tokenized": {}}
        for name, tok in tokenizers.items():
            out = preprocess_plain([[{"from": who, "value": text} for who, text in turns]], tok)
            case["tokenized"][name] = {"input_ids": out["input_ids"][0].tolist(), "labels": out["labels"][0].tolist()}
        cases.append(case)
    return cases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mirror", required=True, help="bare git dir of haotian-liu/LLaVA")
    args = parser.parse_args()
    conversation_lib, preprocess_v1, preprocess_plain = load_seed(args.mirror)
    vocab, merges = train_vocab()
    tokenizers = {f"legacy_{str(legacy).lower()}": llama_tokenizer(vocab, merges, legacy) for legacy in (True, False)}
    cases = run_seed(conversation_lib, preprocess_v1, tokenizers)
    cases += run_plain(conversation_lib, preprocess_plain, tokenizers)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    payload = {"seed": f"{SEED_REPO}@{SEED_COMMIT}", "vocab": vocab, "merges": merges, "cases": cases}
    tmp = OUT.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload, ensure_ascii=False, indent=0) + "\n", encoding="utf-8")
    tmp.replace(OUT)
    print(f"wrote {OUT}: {len(cases)} cases, vocab {len(vocab)}")


if __name__ == "__main__":
    main()
