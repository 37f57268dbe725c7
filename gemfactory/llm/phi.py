"""Phi-2 family (PhiForCausalLM), TinyLLaVA's 3B backbone. No BOS; <|endoftext|> ends turns."""
from ..registry import LLMS
from .base import LLMFamily


@LLMS.register("phi")
class Phi(LLMFamily):
    name = "phi"
    model_type = "phi"
    default_template = "phi"
    has_bos = False
    bos_token = None
    eos_token = "<|endoftext|>"
    pad_token = None  # Phi-2 pads with <|endoftext|>
    unk_token = None
    tiny_arch = dict(
        hidden_size=64, intermediate_size=176, num_hidden_layers=2, num_attention_heads=4,
        max_position_embeddings=1024, partial_rotary_factor=0.5, tie_word_embeddings=False,
    )
