"""Chat templates: a conversation -> token ids and labels in one pass.

A template turns the turns of a conversation into text segments, each marked supervised or not.
The segments are joined and tokenized once (so token merges are exactly those of the full prompt,
as ``apply_chat_template`` would give), and each token is supervised when its characters fall in a
supervised segment. Only assistant replies and their end marker are supervised.
"""
from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field

from ..errors import DataError

IGNORE_INDEX = -100
IMAGE_TOKEN = "<image>"
ECG_TOKEN = "<ecg>"
PLACEHOLDERS = (IMAGE_TOKEN, ECG_TOKEN)
ROLE_ALIASES = {
    "human": "user", "user": "user",
    "gpt": "assistant", "assistant": "assistant", "model": "assistant", "bot": "assistant",
    "system": "system",
}


@dataclass(frozen=True)
class Turn:
    role: str  # user | assistant | system
    text: str


@dataclass
class Encoded:
    input_ids: list[int]
    labels: list[int]
    text: str = ""
    spans: list[tuple[int, int]] = field(default_factory=list)  # supervised character spans


@dataclass(frozen=True)
class SpecialText:
    """The special-token strings of a tokenizer that templates write into the text."""

    bos: str = ""
    eos: str = ""

    @classmethod
    def of(cls, tokenizer) -> "SpecialText":
        return cls(bos=tokenizer.bos_token or "", eos=tokenizer.eos_token or "")


class ChatTemplate:
    """Subclasses implement :meth:`segments`; everything else is shared."""

    name = "base"
    system = ""
    add_bos = True  # write the tokenizer's BOS text at the start when it has one

    def segments(self, turns: list[Turn], sp: SpecialText, add_generation_prompt: bool):
        raise NotImplementedError

    def bos(self, sp: SpecialText) -> str:
        """The BOS text a conversation starts with ("" when the template writes none)."""
        return sp.bos if self.add_bos else ""

    def stop_strings(self, sp: SpecialText) -> list[str]:
        return [sp.eos] if sp.eos else []

    def marker_text(self) -> str:
        """The words this template writes around the messages (its system prompt, role markers and
        separators): two user turns and a reply, all empty, rendered without special tokens. A
        tokenizer trained for the template learns them from this text."""
        turns = [Turn("user", ""), Turn("assistant", ""), Turn("user", "")]
        return "".join(text for text, _ in self.segments(turns, SpecialText(), add_generation_prompt=True))

    def with_system(self, turns: list[Turn]) -> tuple[str, list[Turn]]:
        if turns and turns[0].role == "system":
            return turns[0].text, turns[1:]
        return self.system, turns

    def render_prompt(self, turns: list[Turn], tokenizer, add_generation_prompt=True) -> str:
        sp = SpecialText.of(tokenizer)
        return "".join(text for text, _ in self.segments(turns, sp, add_generation_prompt))

    def encode(self, turns: list[Turn], tokenizer, add_generation_prompt: bool = False) -> Encoded:
        check_turns(turns)
        sp = SpecialText.of(tokenizer)
        text, spans = "", []
        for piece, supervised in self.segments(turns, sp, add_generation_prompt):
            if supervised and piece:
                spans.append((len(text), len(text) + len(piece)))
            text += piece
        ids, offsets = _tokenize_pieces(text, sp.bos, tokenizer)
        labels = [IGNORE_INDEX] * len(ids)
        starts = [s for s, _ in spans]
        for i, (a, b) in enumerate(offsets):
            if b <= a:
                continue
            k = bisect.bisect_right(starts, b - 1) - 1  # last span starting before the token ends
            if k >= 0 and spans[k][1] > a:
                labels[i] = ids[i]
        return Encoded(ids, labels, text, spans)


def _tokenize_pieces(text: str, bos: str, tokenizer) -> tuple[list[int], list[tuple[int, int]]]:
    """Token ids and character offsets of ``text``, tokenized as the seeds tokenize a prompt.

    A leading BOS text becomes the BOS id, each ``<image>`` / ``<ecg>`` its own id, and each piece
    of text between them is tokenized as the start of a text (LLaVA's ``tokenizer_image_token``,
    which GEM and TinyLLaVA use too). Tokenizers that write their word marker only at the start of
    a text (Llama's ``legacy=False``: ``▁A`` at the start, ``A`` after a special token) then give
    the seeds' ids; for the others the pieces tokenize as the whole text would.
    """
    bos_id = getattr(tokenizer, "bos_token_id", None)  # a minimal tokenizer (tests, plugins) may have none
    lead = len(bos) if bos and text.startswith(bos) and bos_id is not None else 0
    ids, offsets = ([bos_id], [(0, lead)]) if lead else ([], [])
    added = getattr(tokenizer, "added_tokens_encoder", {})
    marks = [p for p in PLACEHOLDERS if p in added]
    pieces = re.split("(" + "|".join(map(re.escape, marks)) + ")", text[lead:]) if marks else [text[lead:]]
    at = lead
    for piece in pieces:
        if piece in marks:
            ids.append(added[piece])
            offsets.append((at, at + len(piece)))
        elif piece:
            enc = tokenizer(piece, add_special_tokens=False, return_offsets_mapping=True)
            ids.extend(enc["input_ids"])
            offsets.extend((a + at, b + at) for a, b in enc["offset_mapping"])
        at += len(piece)
    return ids, offsets


def normalize_conversation(conversations, item_id: str = "?") -> list[Turn]:
    """LLaVA (``from``/``value``) or chat (``role``/``content``) turns -> :class:`Turn` list."""
    if not isinstance(conversations, list) or not conversations:
        raise DataError(f"sample {item_id}: 'conversations' must be a non-empty list of turns")
    turns = []
    for i, t in enumerate(conversations):
        if not isinstance(t, dict):
            raise DataError(f"sample {item_id}: conversations[{i}] must be a mapping, got {type(t).__name__}")
        role = t.get("from", t.get("role"))
        text = t.get("value", t.get("content"))
        if role not in ROLE_ALIASES:
            raise DataError(
                f"sample {item_id}: conversations[{i}].from: {role!r} is not one of "
                f"human/gpt/user/assistant/system"
            )
        if not isinstance(text, str):
            raise DataError(f"sample {item_id}: conversations[{i}].value must be text, got {type(text).__name__}")
        turns.append(Turn(ROLE_ALIASES[role], text))
    return turns


def check_turns(turns: list[Turn]) -> None:
    roles = [t.role for t in turns if t.role != "system"]
    if any(t.role == "system" for t in turns[1:]):
        raise DataError("a system turn may only come first")
    for i, role in enumerate(roles):
        expected = "user" if i % 2 == 0 else "assistant"
        if role != expected:
            article = "a" if expected == "user" else "an"
            raise DataError(
                f"turn {i}: expected {article} {expected} turn, got {role} (turns must alternate, user first)"
            )
