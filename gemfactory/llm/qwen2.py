"""Qwen2 / Qwen2.5 family (Qwen2ForCausalLM), ChatML conversations (template chatml).

Tokens: Qwen writes no BOS (its tokenizer has none). ``<|im_start|>role`` opens a turn and
``<|im_end|>`` closes it, so ``<|im_end|>`` is the chat EOS here (the instruct checkpoints use it
as EOS; base checkpoints name ``<|endoftext|>``, the chatml template stops on both).
Padding: ``<|endoftext|>``, as in the released tokenizers.
"""
from ..registry import LLMS
from .base import LLMFamily


@LLMS.register("qwen2")
class Qwen2(LLMFamily):
    """Qwen2/2.5 (qwen2): no BOS, replies end with <|im_end|>, pads with <|endoftext|>; template chatml."""

    name = "qwen2"
    model_type = "qwen2"
    default_template = "chatml"
    has_bos = False
    bos_token = None
    eos_token = "<|im_end|>"
    pad_token = "<|endoftext|>"
    unk_token = None  # byte-level BPE has no unknown token
    extra_special_tokens = ("<|im_start|>", "<|im_end|>", "<|endoftext|>")
    # Qwen2 attention has q/k/v biases built in; grouped-query heads as in the real models
    tiny_arch = dict(
        hidden_size=64, intermediate_size=176, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=1024, tie_word_embeddings=False,
    )
