"""ChatML as Qwen2/2.5 write it: ``<|im_start|>role\\n...<|im_end|>\\n``, default system prompt.

``<|im_start|>system\\n{system}<|im_end|>\\n<|im_start|>user\\n{q}<|im_end|>\\n``
``<|im_start|>assistant\\n{a}<|im_end|>\\n``

No BOS is written (Qwen has none). Without a system turn, Qwen2's default system prompt is used.
Messages are written as given (Qwen's template does not strip them). Supervised: each reply and
its ``<|im_end|>``; the newline after it belongs to the prompt.
"""
from ..registry import TEMPLATES
from .base import ChatTemplate

IM_START, IM_END = "<|im_start|>", "<|im_end|>"


@TEMPLATES.register("chatml")
class ChatML(ChatTemplate):
    """Qwen2 ChatML: <|im_start|>role ... <|im_end|>, default system prompt, no BOS."""

    name = "chatml"
    # Qwen2's default; Qwen2.5-Instruct's names the model, so give a system turn for that one
    system = "You are a helpful assistant."
    add_bos = False

    def segments(self, turns, sp, add_generation_prompt):
        system, turns = self.with_system(turns)
        yield self.bos(sp) + f"{IM_START}system\n{system}{IM_END}\n", False
        for turn in turns:
            yield f"{IM_START}{turn.role}\n", False
            if turn.role == "assistant":
                yield turn.text + IM_END, True
                yield "\n", False
            else:
                yield turn.text + IM_END + "\n", False
        if add_generation_prompt:
            if turns and turns[-1].role == "assistant":
                raise ValueError("add_generation_prompt needs the conversation to end with a user turn")
            yield f"{IM_START}assistant\n", False

    def stop_strings(self, sp):
        return [IM_END] + ([sp.eos] if sp.eos and sp.eos != IM_END else [])
