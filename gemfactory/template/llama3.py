"""Llama-3 chat format: ``<|start_header_id|>role<|end_header_id|>`` headers, ``<|eot_id|>`` ends turns.

``<|begin_of_text|><|start_header_id|>user<|end_header_id|>\\n\\n{q}<|eot_id|>``
``<|start_header_id|>assistant<|end_header_id|>\\n\\n{a}<|eot_id|>`` ...

The BOS is the tokenizer's (``<|begin_of_text|>`` for Llama-3). A system turn is written only when
the conversation has one (Llama-3 has no default system prompt; 3.1's dated preamble is not
added). As Meta's template does, each message is stripped of surrounding whitespace.
Supervised: each reply and its ``<|eot_id|>``.
"""
from ..registry import TEMPLATES
from .base import ChatTemplate

START, END, EOT = "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"


@TEMPLATES.register("llama3")
class Llama3Template(ChatTemplate):
    """Llama-3 headers <|start_header_id|>role<|end_header_id|>, <|eot_id|> after each turn."""

    name = "llama3"
    system = ""

    @staticmethod
    def header(role: str) -> str:
        return f"{START}{role}{END}\n\n"

    def segments(self, turns, sp, add_generation_prompt):
        given = bool(turns) and turns[0].role == "system"  # written even when empty, as Meta's is
        system, turns = self.with_system(turns)
        head = self.bos(sp)
        if given or system:
            head += self.header("system") + system.strip() + EOT
        yield head, False
        for turn in turns:
            yield self.header(turn.role), False
            yield turn.text.strip() + EOT, turn.role == "assistant"
        if add_generation_prompt:
            if turns and turns[-1].role == "assistant":
                raise ValueError("add_generation_prompt needs the conversation to end with a user turn")
            yield self.header("assistant"), False

    def stop_strings(self, sp):
        return [EOT] + ([sp.eos] if sp.eos and sp.eos != EOT else [])
