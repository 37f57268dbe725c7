"""Chat templates: token ids and a label mask supervising exactly the assistant replies."""
from __future__ import annotations

import os

from ..registry import LLMS, TEMPLATES
from ..template.base import IGNORE_INDEX, ChatTemplate, SpecialText
from ..template.check import check_sample
from .kit import Failed, Findings
from .modules import subclass_of
from .train_step import SYSTEM, check_train_step, conversation, model_config, tiny_tokenizer


def check(name: str, findings: Findings) -> None:
    template = findings.need("build", _build, name)
    family = paired_family(name)
    tokenizer = findings.need("tokenizer", lambda: (tiny_tokenizer(family, name), f"the {family.rpartition(':')[2]} family's, trained by the kit"))
    findings.check("label mask", _label_mask, template, tokenizer)
    findings.check("generation prompt", _generation_prompt, template, tokenizer)
    findings.check("stop strings", _stop_strings, template, tokenizer)
    check_train_step(findings, model_config(llm=family, llm_arch={}, template=name), None)


def paired_family(template: str) -> str:
    """The first LLM family whose default this template is (its special tokens), else vicuna; by
    full name (``distribution:name``)."""
    short = template.rpartition(":")[2]
    return next((f"{e.origin}:{e.name}" for e in LLMS.entries() if e.obj.default_template == short),
                "gemfactory:vicuna")


def _build(name: str) -> tuple:
    template = subclass_of(TEMPLATES.get(name), ChatTemplate)()
    return template, f"{type(template).__name__} (name {template.name!r})"


def _label_mask(template, tokenizer) -> str:
    for turns in (conversation(), [SYSTEM, *conversation()]):
        enc = template.encode(turns, tokenizer)
        if len(enc.labels) != len(enc.input_ids):
            raise Failed(f"{len(enc.labels)} labels for {len(enc.input_ids)} tokens")
        wrong = next((i for i, (t, label) in enumerate(zip(enc.input_ids, enc.labels))
                      if label not in (IGNORE_INDEX, t)), None)
        if wrong is not None:
            raise Failed(f"label {enc.labels[wrong]} at position {wrong}; expected the token id "
                         f"{enc.input_ids[wrong]} or {IGNORE_INDEX}")
        check_sample(template, turns, tokenizer)  # raises when supervision misses or exceeds the replies
    return "exactly the 2 assistant replies are supervised, with and without a system turn"


def _generation_prompt(template, tokenizer) -> str:
    turns = conversation()
    prompt = template.render_prompt(turns[:-1], tokenizer, add_generation_prompt=True)
    trained = template.encode(turns, tokenizer).text
    if not trained.startswith(prompt):
        at = len(os.path.commonprefix([prompt, trained]))
        raise Failed(f"the generation prompt is not how the training text goes on: the prompt has "
                     f"{prompt[at:at + 30]!r} where training has {trained[at:at + 30]!r}")
    return "the prompt with add_generation_prompt=True is a prefix of the training text"


def _stop_strings(template, tokenizer) -> str:
    stops = template.stop_strings(SpecialText.of(tokenizer))
    if not stops or not all(isinstance(s, str) and s for s in stops):
        raise Failed(f"stop_strings() must be a non-empty list of non-empty strings, got {stops!r}")
    enc = template.encode(conversation(), tokenizer)
    for a, b in enc.spans:
        if not any(s in enc.text[a:b] for s in stops):
            raise Failed(f"the supervised reply {enc.text[a:b]!r} holds none of the stop strings {stops!r}, "
                         f"so the model never learns to stop")
    return f"{stops!r}; every supervised reply holds one"
