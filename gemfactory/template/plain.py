"""LLaVA's ``plain`` pretraining style: the modality placeholders, then the caption.

Instruction text in the user turn is dropped; only the placeholders it holds are kept, so stage-1
connector pretraining learns to caption from the modality tokens alone.
"""
from ..registry import TEMPLATES
from .base import PLACEHOLDERS, ChatTemplate


@TEMPLATES.register("plain")
class Plain(ChatTemplate):
    name = "plain"
    separator = "\n"

    def segments(self, turns, sp, add_generation_prompt):
        _, turns = self.with_system(turns)
        yield self.bos(sp), False
        for turn in turns:
            if turn.role == "user":
                found = sorted((turn.text.find(p), p) for p in PLACEHOLDERS if p in turn.text)
                yield "".join(p * turn.text.count(p) for _, p in found), False
            else:
                yield turn.text + self.separator, True

    def stop_strings(self, sp):
        return [self.separator] + super().stop_strings(sp)
