"""Llama-3 / 3.1 / 3.2 family (LlamaForCausalLM, 128k tiktoken-style vocabulary), template llama3.

Tokens: ``<|begin_of_text|>`` is the BOS and every prompt starts with it; a chat turn ends with
``<|eot_id|>``, which is therefore this family's EOS (the instruct checkpoints say so too; the base
checkpoints name ``<|end_of_text|>`` instead, which the llama3 template also treats as a stop).
Turn headers are ``<|start_header_id|>role<|end_header_id|>``.

Padding: the released tokenizers have no pad token. Llama-3.1/3.2 reserve
``<|finetune_right_pad_id|>`` (id 128004) for it, Llama-3.0 has ``<|reserved_special_token_2|>`` at
that id; a loaded tokenizer pads with whichever exists, else with EOS. The tiny twin adds
``<|finetune_right_pad_id|>`` as its pad. Padding is always masked, so its choice never changes a
loss.
"""
from ..registry import LLMS
from .base import LLMFamily

RESERVED_PADS = ("<|finetune_right_pad_id|>", "<|reserved_special_token_2|>")


@LLMS.register("llama3")
class Llama3(LLMFamily):
    """Llama-3/3.1/3.2 (llama): BOS <|begin_of_text|>, turns end with <|eot_id|>; template llama3."""

    name = "llama3"
    model_type = "llama"
    default_template = "llama3"
    has_bos = True
    bos_token = "<|begin_of_text|>"
    eos_token = "<|eot_id|>"  # ends each chat turn
    pad_token = RESERVED_PADS[0]
    unk_token = None  # byte-level BPE: every string encodes, there is no unknown token
    extra_special_tokens = ("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", "<|end_of_text|>")
    # grouped-query attention and the large RoPE base of Llama-3, shrunk
    tiny_arch = dict(
        hidden_size=64, intermediate_size=176, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=1024, tie_word_embeddings=False,
        rope_parameters={"rope_type": "default", "rope_theta": 500000.0},
    )

    def load_tokenizer(self, path: str):
        from transformers import AutoTokenizer

        from .base import _require_dir

        _require_dir(path, "model.llm.tokenizer")
        tok = AutoTokenizer.from_pretrained(path)
        if tok.pad_token is None:
            vocab = tok.get_vocab()
            tok.pad_token = next((t for t in RESERVED_PADS if t in vocab), tok.eos_token)
        return tok
