"""Regenerate tests/data/tinyllava_templates_golden.json by running TinyLLaVA Factory's template code.

From a bare git mirror of TinyLLaVA/TinyLLaVA_Factory (``--mirror``) at SEED_COMMIT this script
copies ``tinyllava/data/template/{base,formatter,<name>_template}.py`` and
``tinyllava/utils/constants.py`` into a temporary package and imports them as they are. Stubbed:
the template package's ``__init__`` (the seed's walks its folder to import every template and
keeps a name -> class dict; here a five-line dict does the same registering). One shim: the
formatter classes get ``object.__hash__``, because Python 3.11 refuses the seed's dataclass
defaults that Python 3.10 (the seed's) accepted; it changes no output.

Tokenizers (their files stored in the fixture): gemfactory's tiny ``phi``, ``qwen2`` and ``gemma``
family tokenizers (``qwen2_base``: the qwen2 one ending documents with ``<|endoftext|>``) (byte-level BPE with each family's special tokens) and the Llama-style tokenizer
of ``llava_conversation_golden.json`` (``legacy=True``), padded as TinyLLaVA pads them
(``pad = unk`` for phi and gemma). For each (TinyLLaVA template, tokenizer) and conversation the
fixture holds the prompt TinyLLaVA renders and ``Template.encode(..., mode="train")``'s ids and labels.

    python scripts/make_tinyllava_template_fixture.py --mirror /work/.mirror/TinyLLaVA+TinyLLaVA_Factory/repo
"""
from __future__ import annotations

import argparse
import importlib
import json
import sys
import tempfile
from pathlib import Path

import seed_code

SEED_REPO = "TinyLLaVA/TinyLLaVA_Factory"
SEED_COMMIT = "53f12c7804102104d54064102b5d2139343e59c5"
ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "data" / "tinyllava_templates_golden.json"
# TinyLLaVA template -> the tokenizer it runs with here
PAIRS = {"phi": "phi", "qwen2_base": "qwen2_base", "qwen2_instruct": "qwen2", "gemma": "gemma", "llama": "llama"}
TEMPLATE_INIT = '''TEMPlATE_FACTORY = {}
def register_template(name):
    def register_template_cls(cls):
        TEMPlATE_FACTORY.setdefault(name, cls)
        return cls
    return register_template_cls
'''
CONVERSATIONS = [
    [("human", "<image>\nWhat is shown in the picture?"), ("gpt", "A red bicycle leaning on a wall.")],
    [("human", "Hello there"), ("gpt", "Hi! How can I help?"),
     ("human", "Count to three."), ("gpt", "1, 2, 3.")],
    [("human", "<image>\nDescribe the ECG rhythm."), ("gpt", "Sinus rhythm at 72 bpm."),
     ("human", "Is the QRS wide?"), ("gpt", "No: it is 90 ms, within normal limits.")],
]


def git_show(mirror: str, path: str) -> str:
    return seed_code.git_show(mirror, SEED_COMMIT, path)


def import_seed_templates(mirror: str) -> dict:
    root = Path(tempfile.mkdtemp(prefix="tinyllava_seed_")) / "tinyllava_seed"
    for sub in ("", "utils", "data", "data/template"):
        (root / sub).mkdir(parents=True, exist_ok=True)
        (root / sub / "__init__.py").write_text("")
    (root / "utils" / "constants.py").write_text(git_show(mirror, "tinyllava/utils/constants.py"))
    (root / "data" / "template" / "__init__.py").write_text(TEMPLATE_INIT)
    for name in ("base", "formatter", *(f"{t}_template" for t in PAIRS)):
        (root / "data" / "template" / f"{name}.py").write_text(git_show(mirror, f"tinyllava/data/template/{name}.py"))
    sys.path.insert(0, str(root.parent))
    formatter = importlib.import_module("tinyllava_seed.data.template.formatter")
    for cls in (formatter.EmptyFormatter, formatter.StringFormatter):
        cls.__hash__ = object.__hash__  # Python >= 3.11 refuses unhashable dataclass defaults; 3.10 did not
    for t in PAIRS:
        importlib.import_module(f"tinyllava_seed.data.template.{t}_template")
    return importlib.import_module("tinyllava_seed.data.template").TEMPlATE_FACTORY


def tokenizers() -> dict:
    """name -> tokenizer, and name -> its files as text, for the tokenizers of PAIRS."""
    sys.path.insert(0, str(ROOT))
    from transformers import LlamaTokenizer

    from gemfactory.registry import LLMS

    texts = [text for conv in CONVERSATIONS for _, text in conv] * 3 + ["USER: ASSISTANT: A chat between"]
    out = {}
    for name in ("phi", "qwen2", "gemma"):
        tok = LLMS.get(name)().train_tokenizer(texts, 600)
        if name in ("phi", "gemma"):
            tok.pad_token = tok.unk_token or tok.eos_token  # TinyLLaVA's llm/phi.py, llm/gemma.py
        if name == "gemma":
            tok.add_bos_token = True  # Gemma's tokenizer starts every text with <bos>; TinyLLaVA's gemma counts on it
        out[name] = tok
    # Qwen2 base checkpoints end documents (and pad) with <|endoftext|>; the Instruct ones end replies with <|im_end|>
    out["qwen2_base"] = LLMS.get("qwen2")().train_tokenizer(texts, 600)
    out["qwen2_base"].eos_token = "<|endoftext|>"
    llava = json.loads((ROOT / "tests" / "data" / "llava_conversation_golden.json").read_text("utf-8"))
    llama = LlamaTokenizer(vocab=dict(llava["vocab"]), merges=[tuple(m.split(" ")) for m in llava["merges"]],
                           legacy=True, add_bos_token=True)
    llama.pad_token = llama.unk_token
    out["llama"] = llama
    files = {}
    for name, tok in out.items():
        tok.model_max_length = 2048
        if name == "llama":  # rebuilt from llava_conversation_golden.json (a saved copy would lose legacy=True)
            continue
        folder = Path(tempfile.mkdtemp(prefix=f"tok_{name}_"))
        tok.save_pretrained(folder)
        files[name] = {p.name: p.read_text("utf-8") for p in sorted(folder.iterdir()) if p.is_file()}
        files[name]["add_bos_token"] = tok.add_bos_token  # transformers 5 does not keep it in the files
    return out, files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mirror", required=True, help="bare git dir of TinyLLaVA/TinyLLaVA_Factory")
    args = parser.parse_args()
    factory = import_seed_templates(args.mirror)
    import time

    time.sleep = lambda seconds: None  # the seed pauses 5 s after each "tokenization mismatch" warning
    toks, files = tokenizers()
    cases = []
    for template_name, tok_name in PAIRS.items():
        template = factory[template_name]()
        for turns in CONVERSATIONS:
            messages = [{"from": who, "value": text} for who, text in turns]
            questions, answers = template.get_list_from_message(messages)
            enc = template.encode(messages, toks[tok_name], mode="train")
            cases.append({"seed_template": template_name, "tokenizer": tok_name, "turns": [list(t) for t in turns],
                          "prompt": template.prompt(questions, answers),
                          "input_ids": enc["input_ids"].tolist(), "labels": enc["labels"].tolist()})
    payload = {"seed": f"{SEED_REPO}@{SEED_COMMIT}", "tokenizers": files, "cases": cases}
    tmp = OUT.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload, ensure_ascii=False, indent=0) + "\n", encoding="utf-8")
    tmp.replace(OUT)
    print(f"wrote {OUT}: {len(cases)} cases")


if __name__ == "__main__":
    main()
