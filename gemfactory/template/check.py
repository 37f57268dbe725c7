"""Rendered samples with the supervised spans marked ⟦like this⟧, and the check that exactly the
assistant replies are supervised (used by ``gemfactory template check`` and the conformance kit)."""
from __future__ import annotations

from ..errors import DataError
from ..template.base import IGNORE_INDEX

OPEN, CLOSE = "\u27e6", "\u27e7"  # ⟦supervised⟧


def marked(tokenizer, ids: list[int], labels: list[int]) -> str:
    out, inside = [], False
    for i, label in zip(ids, labels):
        sup = label != IGNORE_INDEX
        if sup != inside:
            out.append(OPEN if sup else CLOSE)
            inside = sup
        out.append(tokenizer.decode([i]))
    if inside:
        out.append(CLOSE)
    return "".join(out)


def check_sample(template, turns, tokenizer) -> str:
    """Render one conversation; raise when supervision does not match the assistant replies."""
    for i, t in enumerate(turns):
        if t.role == "assistant" and not t.text.strip():
            raise DataError(f"turn {i}: empty assistant reply (nothing to learn but the end token)")
    enc = template.encode(turns, tokenizer)
    supervised = [i for i, label in zip(enc.input_ids, enc.labels) if label != IGNORE_INDEX]
    if not supervised:
        raise DataError("no supervised token: no assistant reply would be learned")
    replies = [t.text.strip() for t in turns if t.role == "assistant"]
    text = tokenizer.decode(supervised, skip_special_tokens=True)
    missing = [r for r in replies if r and r not in text]
    if missing:
        raise DataError(f"assistant reply not fully supervised: {missing[0][:60]!r}")
    extra = text
    for r in replies:
        extra = extra.replace(r, "", 1)
    if extra.strip():
        raise DataError(f"text outside the assistant replies is supervised: {extra.strip()[:60]!r}")
    return marked(tokenizer, enc.input_ids, enc.labels)

