"""Vicuna / Llama-1/2 family (LlamaForCausalLM), LLaVA-1.5's and GEM's language model."""
from ..registry import LLMS
from .base import LLMFamily


@LLMS.register("vicuna")
class Vicuna(LLMFamily):
    name = "vicuna"
    model_type = "llama"
    default_template = "vicuna_v1"
    tiny_arch = dict(
        hidden_size=64, intermediate_size=176, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=4, max_position_embeddings=1024, tie_word_embeddings=False,
    )
