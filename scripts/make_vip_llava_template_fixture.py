"""Regenerate tests/data/vip_llava_golden.json by running ViP-LLaVA's own prompt code.

As ``make_llava_template_fixture.py`` does for LLaVA, from a bare git mirror of mu-cai/ViP-LLaVA
(``--mirror``) at SEED_COMMIT: ``llava/conversation.py`` imported as it is (``conv_llava_v1``,
ViP-LLaVA's fine-tuning version), ``preprocess_v1`` and ``tokenizer_image_token`` taken out of
``llava/train/train.py`` and ``llava/mm_utils.py`` with ``ast``. Same conversations and the same
tiny Llama-style tokenizers (vocabulary read from ``tests/data/llava_conversation_golden.json``).

    python scripts/make_vip_llava_template_fixture.py --mirror /work/.mirror/mu-cai+ViP-LLaVA/repo
"""
from __future__ import annotations

import argparse
import json
import sys
import typing
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import seed_code  # noqa: E402
from make_llava_template_fixture import CONVERSATIONS, llama_tokenizer  # noqa: E402
from seed_code import function_source  # noqa: E402

SEED_REPO = "mu-cai/ViP-LLaVA"
SEED_COMMIT = "ab4e364125ba55767d35025ca3af6ee5b90b69e6"
DATA = Path(__file__).resolve().parent.parent / "tests" / "data"
OUT = DATA / "vip_llava_golden.json"


def git_show(mirror: str, path: str) -> str:
    return seed_code.git_show(mirror, SEED_COMMIT, path)


def load_seed(mirror: str):
    import torch
    import transformers

    conversation_lib = seed_code.import_seed_file(mirror, SEED_COMMIT, "llava/conversation.py", "vip_seed_conversation")
    constants = seed_code.seed_constants(mirror, SEED_COMMIT)
    names = {"torch": torch, "transformers": transformers, "Dict": typing.Dict, "conversation_lib": conversation_lib,
             "IGNORE_INDEX": constants["IGNORE_INDEX"], "IMAGE_TOKEN_INDEX": constants["IMAGE_TOKEN_INDEX"]}
    exec(function_source(git_show(mirror, "llava/mm_utils.py"), "tokenizer_image_token"), names)
    exec(function_source(git_show(mirror, "llava/train/train.py"), "preprocess_v1"), names)
    return conversation_lib, names["preprocess_v1"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mirror", required=True, help="bare git dir of mu-cai/ViP-LLaVA")
    args = parser.parse_args()
    conversation_lib, preprocess_v1 = load_seed(args.mirror)
    llava = json.loads((DATA / "llava_conversation_golden.json").read_text("utf-8"))
    tokenizers = {f"legacy_{str(legacy).lower()}": llama_tokenizer(llava["vocab"], llava["merges"], legacy)
                  for legacy in (True, False)}
    conversation_lib.default_conversation = conversation_lib.conv_templates["llava_v1"]
    cases = []
    for turns in CONVERSATIONS:
        conv = conversation_lib.conv_templates["llava_v1"].copy()
        conv.messages = []
        for who, text in turns:
            conv.append_message(conv.roles[0] if who == "human" else conv.roles[1], text)
        case = {"template": "llava_v1", "turns": [list(t) for t in turns], "prompt": conv.get_prompt(), "tokenized": {}}
        has_image = any("<image>" in text for _, text in turns)
        for name, tok in tokenizers.items():
            out = preprocess_v1([[{"from": who, "value": text} for who, text in turns]], tok, has_image=has_image)
            case["tokenized"][name] = {"input_ids": out["input_ids"][0].tolist(), "labels": out["labels"][0].tolist()}
        cases.append(case)
    tmp = OUT.with_suffix(".tmp")
    tmp.write_text(json.dumps({"seed": f"{SEED_REPO}@{SEED_COMMIT}", "cases": cases}, ensure_ascii=False, indent=0)
                   + "\n", encoding="utf-8")
    tmp.replace(OUT)
    print(f"wrote {OUT}: {len(cases)} cases")


if __name__ == "__main__":
    main()
