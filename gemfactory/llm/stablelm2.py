"""StableLM-2-1.6B family (StableLmForCausalLM), TinyLLaVA's 1.6B backbone. No BOS is written.

Tokens: the released tokenizer names ``<|endoftext|>`` as BOS, EOS and unknown token alike but
never prepends it (``add_bos_token`` is off), so nothing marks the start of a prompt; the tiny twin
has no BOS at all. ``<|endoftext|>`` ends each reply, and pads (padding is masked).

Template: ``phi``. TinyLLaVA trained its StableLM-2 models with the same conversation as its
Phi-2 ones (Vicuna-style ``USER: ... ASSISTANT: ...`` with no BOS, ``<|endoftext|>`` closing each
reply), and that matches this tokenizer exactly: no BOS, ``<|endoftext|>`` as EOS. The
``vicuna_v1`` template would instead write the tokenizer's BOS text, which for a real StableLM-2
tokenizer is ``<|endoftext|>`` -- an end-of-document marker at the start of every prompt.
"""
from ..registry import LLMS
from .base import LLMFamily


@LLMS.register("stablelm2")
class StableLM2(LLMFamily):
    """StableLM-2-1.6B (stablelm): no BOS, <|endoftext|> ends replies and pads; template phi."""

    name = "stablelm2"
    model_type = "stablelm"
    default_template = "phi"
    has_bos = False
    bos_token = None
    eos_token = "<|endoftext|>"
    pad_token = None  # pad with <|endoftext|>
    unk_token = None
    # StableLM-2: LayerNorm, q/k/v biases, rotary embedding on a quarter of each head
    tiny_arch = dict(
        hidden_size=64, intermediate_size=176, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=4, max_position_embeddings=1024, use_qkv_bias=True,
        partial_rotary_factor=0.25, tie_word_embeddings=False,
    )
