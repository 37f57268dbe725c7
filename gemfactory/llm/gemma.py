"""Gemma-2B family (GemmaForCausalLM), TinyLLaVA's Gemma backbone; template gemma.

Tokens: BOS ``<bos>`` starts every prompt, a turn is ``<start_of_turn>role ... <end_of_turn>``
(role ``user`` or ``model``), so ``<end_of_turn>`` is what ends a reply; ``<eos>`` ends a document
and is also a stop. Gemma has a real ``<pad>`` token (id 0) that its embedding keeps at zero.

The tiny twin orders its special tokens as the real vocabulary does (``<pad>`` 0, ``<eos>`` 1,
``<bos>`` 2, ``<unk>`` 3), so the token ids in the default GemmaConfig -- in particular
``pad_token_id=0``, the embedding's padding index -- point at the right tokens.
"""
from ..registry import LLMS
from .base import LLMFamily


@LLMS.register("gemma")
class Gemma(LLMFamily):
    """Gemma-2B (gemma): <bos>, <pad>, replies end with <end_of_turn>; template gemma."""

    name = "gemma"
    model_type = "gemma"
    default_template = "gemma"
    has_bos = True
    bos_token = "<bos>"
    eos_token = "<eos>"
    pad_token = "<pad>"
    unk_token = "<unk>"
    extra_special_tokens = ("<start_of_turn>", "<end_of_turn>")
    # Gemma's head_dim is set on its own (256 by default, far wider than a tiny model), and
    # Gemma-2B uses multi-query attention (one key/value head). Gemma ties its input and output
    # embeddings; the tiny twin does not, like the other tiny families.
    tiny_arch = dict(
        hidden_size=64, intermediate_size=176, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=1, head_dim=16, max_position_embeddings=1024, tie_word_embeddings=False,
    )

    def special_tokens(self) -> dict[str, str]:
        # Gemma's vocabulary order: pad, eos, bos, unk (ids 0-3); the tiny tokenizer follows it
        order = ("pad_token", "eos_token", "bos_token", "unk_token")
        tokens = super().special_tokens()
        return {k: tokens[k] for k in order if k in tokens}
