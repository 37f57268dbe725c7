"""Per-item text context (LLaVA-Graph): a figure caption and/or OCR text shown to the model.

An item may carry ``"context": {"caption": str, "ocr": str}`` (each key optional). The context is
input, never target: :func:`apply_context` writes it into the *first user turn*, in one fixed
layout, so training, evaluation and chat all build the same prompt::

    <placeholders that open the turn, if any, then a newline>
    Caption: {caption}
    OCR: {ocr}
    {the user's question}

* a line is written only for a key that is present and not blank (``Caption`` first, then ``OCR``);
* the placeholders (``<image>``, ``<ecg>``) that open the turn stay in front, so the modality
  tokens come first as in LLaVA; a turn that does not start with a placeholder gets the lines at
  its very start;
* the values are copied verbatim (inner newlines kept); they must not contain ``<image>`` or
  ``<ecg>``.

Only the assistant reply (LLaVA-Graph: the paper paragraph that first mentions the figure) is
supervised; the caption and OCR lines are part of the prompt.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from ..errors import DataError
from ..template.base import PLACEHOLDERS, Turn

CONTEXT_KEYS = ("caption", "ocr")
CONTEXT_LABELS = {"caption": "Caption", "ocr": "OCR"}
# placeholders (with the blanks between them) that open a turn
_LEADING = re.compile(r"\A\s*(?:(?:<image>|<ecg>)[ \t]*\n?)+")


def check_context(context, item_id: str = "?") -> dict | None:
    """Validate an item's ``context`` value; returns it (``None`` when absent)."""
    if context is None:
        return None
    if not isinstance(context, dict):
        raise DataError(f"sample {item_id}: 'context' must be an object with 'caption' and/or 'ocr' "
                        f"text, got {type(context).__name__}")
    unknown = sorted(set(context) - set(CONTEXT_KEYS))
    if unknown:
        raise DataError(f"sample {item_id}: context has unknown keys {unknown}; expected some of "
                        f"{list(CONTEXT_KEYS)}")
    for key in CONTEXT_KEYS:
        if key not in context:
            continue
        value = context[key]
        if not isinstance(value, str):
            raise DataError(f"sample {item_id}: context.{key} must be text, got {type(value).__name__}")
        if any(p in value for p in PLACEHOLDERS):
            raise DataError(f"sample {item_id}: context.{key} must not contain the placeholders "
                            f"{list(PLACEHOLDERS)}")
    return context


def context_block(context, item_id: str = "?") -> str:
    """The lines a context adds to the prompt (``""`` when there is nothing to add)."""
    context = check_context(context, item_id)
    if not context:
        return ""
    return "".join(f"{CONTEXT_LABELS[k]}: {context[k]}\n" for k in CONTEXT_KEYS
                   if isinstance(context.get(k), str) and context[k].strip())


def apply_context(turns: list[Turn], context, item_id: str = "?") -> list[Turn]:
    """``turns`` with the context lines written into the first user turn (see module docstring)."""
    block = context_block(context, item_id)
    if not block:
        return turns
    for k, turn in enumerate(turns):
        if turn.role != "user":
            continue
        m = _LEADING.match(turn.text)
        head = m.group(0) if m else ""
        if head and not head.endswith("\n"):
            head = head.rstrip(" \t") + "\n"
        text = head + block + turn.text[len(m.group(0)) if m else 0:]
        return [*turns[:k], Turn("user", text), *turns[k + 1:]]
    raise DataError(f"sample {item_id}: has a context but no user turn to put it in")


def context_from_flags(caption: str | None = None, ocr: str | None = None, path=None) -> dict | None:
    """The context of ``--caption`` / ``--ocr`` / ``--context FILE`` (a JSON object with ``caption``
    and/or ``ocr``); a key given both in the file and as a flag is an error. ``None`` when none is given."""
    context: dict = {}
    if path is not None:
        try:
            context = json.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise DataError(f"--context {path}: cannot read it ({exc.strerror or exc}); expected a JSON file "
                            f'like {{"caption": "...", "ocr": "..."}}') from None
        except (ValueError, UnicodeDecodeError) as exc:
            raise DataError(f"--context {path}: not valid JSON ({exc}); expected an object like "
                            f'{{"caption": "...", "ocr": "..."}}') from None
        context = dict(check_context(context, f"--context {path}") or {})
    for key, value in (("caption", caption), ("ocr", ocr)):
        if value is None:
            continue
        if key in context:
            raise DataError(f"--{key} and --context {path} both give the {key}; give it once")
        context[key] = value
    return check_context(context, "--caption/--ocr") if context else None
