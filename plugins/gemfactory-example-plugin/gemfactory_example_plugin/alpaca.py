"""``alpaca``: the Stanford Alpaca instruction format.

``{system}\\n\\n### Instruction:\\n{q}\\n\\n### Response:\\n{a}</s>\\n\\n### Instruction:\\n{q2} ...``
Only the responses and their end token are supervised.
"""
from gemfactory.template.base import ChatTemplate


class Alpaca(ChatTemplate):
    """Stanford Alpaca's "### Instruction:" / "### Response:" format."""

    name = "alpaca"
    system = ("Below is an instruction that describes a task. "
              "Write a response that appropriately completes the request.")

    def segments(self, turns, sp, add_generation_prompt):
        system, turns = self.with_system(turns)
        yield (sp.bos if self.add_bos else "") + system + "\n\n", False
        for turn in turns:
            if turn.role == "user":
                yield f"### Instruction:\n{turn.text}\n\n### Response:\n", False
            else:
                yield f"{turn.text}{sp.eos}", True
                yield "\n\n", False
