"""TinyLlama-1.1B chat (LlamaForCausalLM, Llama-2 tokenizer), TinyLLaVA's smallest backbone.

Tokens follow Llama-2: BOS ``<s>`` starts every prompt, ``</s>`` ends each reply, ``<unk>`` is the
unknown token. The released chat tokenizer pads with ``</s>``; the tiny twin does the same rather
than adding a ``<pad>`` that the real vocabulary lacks (padding is masked either way).

Template: TinyLLaVA trained its TinyLlama models with the Vicuna-v1 conversation
(``USER: ... ASSISTANT: ...</s>``), not TinyLlama's own Zephyr-style chat format, so ``vicuna_v1``
is the default.
"""
from ..registry import LLMS
from .base import LLMFamily


@LLMS.register("tinyllama")
class TinyLlama(LLMFamily):
    """TinyLlama-1.1B chat (llama): Llama-2 tokens <s> </s> <unk>; template vicuna_v1 as in TinyLLaVA."""

    name = "tinyllama"
    model_type = "llama"
    default_template = "vicuna_v1"
    has_bos = True
    bos_token = "<s>"
    eos_token = "</s>"
    pad_token = None  # pad with </s>
    unk_token = "<unk>"
    # TinyLlama uses grouped-query attention (32 query heads, 4 key/value heads), shrunk here
    tiny_arch = dict(
        hidden_size=64, intermediate_size=176, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=1024, tie_word_embeddings=False,
    )
