"""Gemma's turns: ``<start_of_turn>user|model\\n...<end_of_turn>\\n``; a system turn joins the first user turn.

``<bos><start_of_turn>user\\n{q}<end_of_turn>\\n<start_of_turn>model\\n{a}<end_of_turn>\\n``

Gemma has no system role, so a system text is put in front of the first user message, separated
by a blank line (an empty system text adds nothing). Messages are stripped of surrounding whitespace, as Google's template does.
Supervised: each reply and its ``<end_of_turn>``; the newline after it belongs to the prompt.
"""
from ..registry import TEMPLATES
from .base import ChatTemplate

SOT, EOT = "<start_of_turn>", "<end_of_turn>"
ROLE = {"user": "user", "assistant": "model"}


@TEMPLATES.register("gemma")
class GemmaTemplate(ChatTemplate):
    """Gemma <start_of_turn>user|model ... <end_of_turn>; system text folded into the first user turn."""

    name = "gemma"
    system = ""

    def segments(self, turns, sp, add_generation_prompt):
        system, turns = self.with_system(turns)
        yield self.bos(sp), False
        for i, turn in enumerate(turns):
            text = turn.text.strip()
            if i == 0 and system.strip():
                text = f"{system.strip()}\n\n{text}"
            yield f"{SOT}{ROLE[turn.role]}\n", False
            if turn.role == "assistant":
                yield text + EOT, True
                yield "\n", False
            else:
                yield text + EOT + "\n", False
        if add_generation_prompt:
            if turns and turns[-1].role == "assistant":
                raise ValueError("add_generation_prompt needs the conversation to end with a user turn")
            yield f"{SOT}model\n", False

    def stop_strings(self, sp):
        return [EOT] + ([sp.eos] if sp.eos and sp.eos != EOT else [])
