"""LLaVA's ``conv_vicuna_v1`` conversation (Vicuna v1.1): "a curious user".

LLaVA-1.5 trains with it (``--version v1``) and its evaluation scripts use it (``vicuna_v1``); GEM
and ViP-LLaVA use :mod:`.llava_v1`, the same layout with LLaVA's other system prompt.
``<s>{system} USER: {q} ASSISTANT: {a}</s>USER: {q2} ASSISTANT: {a2}</s>``; each reply with its
leading space and ``</s>`` is supervised, as LLaVA's ``preprocess_v1`` masks it.
"""
from ..registry import TEMPLATES
from .base import ChatTemplate


@TEMPLATES.register("vicuna_v1")
class VicunaV1(ChatTemplate):
    name = "vicuna_v1"
    system = (
        "A chat between a curious user and an artificial intelligence assistant. "
        "The assistant gives helpful, detailed, and polite answers to the user's questions."
    )

    def segments(self, turns, sp, add_generation_prompt):
        system, turns = self.with_system(turns)
        yield self.bos(sp) + system + " ", False
        for turn in turns:
            if turn.role == "user":
                yield f"USER: {turn.text} ASSISTANT:", False
            else:
                yield f" {turn.text}{sp.eos}", True
        if add_generation_prompt and turns and turns[-1].role == "assistant":
            raise ValueError("add_generation_prompt needs the conversation to end with a user turn")
