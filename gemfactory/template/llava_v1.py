"""LLaVA's ``conv_llava_v1`` conversation, which GEM and ViP-LLaVA train and evaluate with.

Vicuna v1.1's layout (:mod:`.vicuna_v1`) with another system prompt: "a curious human", "the
human's questions". ``<s>{system} USER: {q} ASSISTANT: {a}</s>USER: {q2} ASSISTANT: {a2}</s>``;
the supervised tokens are each reply with its leading space and ``</s>``, as LLaVA's
``preprocess_v1`` masks them (see docs/seeds.md for the tokenizer behaviour this matches).
"""
from ..registry import TEMPLATES
from .vicuna_v1 import VicunaV1


@TEMPLATES.register("llava_v1")
class LlavaV1(VicunaV1):
    name = "llava_v1"
    system = (
        "A chat between a curious human and an artificial intelligence assistant. "
        "The assistant gives helpful, detailed, and polite answers to the human's questions."
    )
