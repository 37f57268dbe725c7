"""LLM families: a HF causal LM + tokenizer built from a tiny config, and a default template."""
from __future__ import annotations

import torch

from ..llm.base import LLMFamily
from ..registry import LLMS, TEMPLATES
from .kit import Failed, Findings
from .modules import check_module, subclass_of
from .train_step import check_train_step, model_config, tiny_tokenizer

BATCH, TOKENS = 2, 7


def check(name: str, findings: Findings) -> None:
    family = findings.need("family", _family, name)
    tokenizer = findings.need("tokenizer", _tokenizer, name)
    config = findings.need("tiny config", _config, family, tokenizer)

    def build(seed: int):
        from transformers import AutoModelForCausalLM

        torch.manual_seed(seed)
        return AutoModelForCausalLM.from_config(config)

    model = findings.need("build", _build, build)
    ids = torch.randint(0, len(tokenizer), (BATCH, TOKENS), generator=torch.Generator().manual_seed(0))
    check_module(findings, model, build, (ids,),
                 [("batch", BATCH), ("tokens", TOKENS), ("vocab_size", config.vocab_size)],
                 run=lambda m, x: m(input_ids=x).logits)
    check_train_step(findings, model_config(llm=name, llm_arch={}, template=None), "language_model")


def _family(name: str) -> tuple:
    family = subclass_of(LLMS.get(name), LLMFamily)()
    if not family.model_type:
        raise Failed("model_type is empty; set the transformers model type, e.g. 'llama'")
    if family.default_template not in TEMPLATES:
        raise Failed(f"default_template {family.default_template!r} is not a registered template")
    return family, f"model type {family.model_type}, default template {family.default_template}"


def _tokenizer(name: str) -> tuple:
    tok = tiny_tokenizer(name)
    missing = [role for role in ("eos_token", "pad_token") if getattr(tok, role) is None]
    if missing:
        raise Failed(f"the trained tokenizer has no {' / '.join(missing)}; set them on the family")
    return tok, f"byte-level BPE of {len(tok)} tokens, eos {tok.eos_token!r}, pad {tok.pad_token!r}"


def _config(family, tokenizer) -> tuple:
    config = family.make_config({}, len(tokenizer))
    if config.model_type != family.model_type:
        raise Failed(f"make_config gave model type {config.model_type!r}; expected {family.model_type!r}")
    if config.vocab_size < len(tokenizer):
        raise Failed(f"vocab_size {config.vocab_size} is smaller than the tokenizer's {len(tokenizer)} tokens")
    return config, f"tiny_arch: hidden {config.hidden_size}, {config.num_hidden_layers} layers, vocab {config.vocab_size}"


def _build(build) -> tuple:
    model = build(0)
    return model, f"{type(model).__name__}: {sum(p.numel() for p in model.parameters()):,} parameters"
