"""What an LLM family provides: its HF architecture, tokenizer conventions and default template.

A family builds a causal LM and its tokenizer from a local HF folder (real weights, offline) or,
for tests and the tiny recipe, from a small config plus a byte-level BPE trained on the data.
"""
from __future__ import annotations

from pathlib import Path

from .. import hub
from ..errors import ConfigError


# LLM config keys that only set the size; anything else in a recipe's llm.arch is kept by the twin
SIZE_KEYS = frozenset({
    "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
    "num_key_value_heads", "head_dim", "max_position_embeddings", "vocab_size", "n_embd", "n_layer",
    "n_head", "n_positions", "n_inner", "sliding_window", "max_window_layers",
    "bos_token_id", "eos_token_id", "pad_token_id",
})
# settings the twin takes from the real LLM config (when one is at hand): they define the architecture
KEEP_FROM_REAL = (
    "hidden_act", "rope_parameters", "partial_rotary_factor", "attention_bias", "mlp_bias",
    "use_qkv_bias", "qk_layernorm", "rms_norm_eps", "layer_norm_eps", "use_sliding_window",
)


class LLMFamily:
    name = "base"
    model_type = ""  # transformers model_type (AutoConfig.for_model)
    default_template = "vicuna_v1"
    has_bos = True
    bos_token: str | None = "<s>"
    eos_token = "</s>"
    pad_token: str | None = "<pad>"  # None: reuse eos (after adding nothing to the vocab)
    unk_token: str | None = "<unk>"
    extra_special_tokens: tuple[str, ...] = ()  # template markers that must stay whole tokens
    tiny_arch: dict = {}  # architecture of the tiny twin; recipe `arch` keys override

    # configs ------------------------------------------------------------------------------
    def make_config(self, arch: dict, vocab_size: int, path: str | None = None):
        from transformers import AutoConfig

        if path:
            config = AutoConfig.from_pretrained(_require_dir(path, "model.llm.path"))
            for key, value in arch.items():
                setattr(config, key, value)
        else:
            settings = {**self.tiny_arch, "vocab_size": vocab_size, **arch}
            try:
                config = AutoConfig.for_model(self.model_type, **settings)
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"model.llm.arch: invalid for {self.model_type}: {exc}") from None
        if config.model_type != self.model_type and path:
            raise ConfigError(
                f"model.llm.path: {path} holds a {config.model_type!r} model, but LLM family "
                f"{self.name!r} expects {self.model_type!r}"
            )
        config.vocab_size = max(int(getattr(config, "vocab_size", 0) or 0), vocab_size)
        return config

    def tiny_arch_for(self, arch: dict, real_config: dict | None) -> dict:
        """The tiny twin's ``arch``: the recipe's non-size keys, plus the settings and key/value-head
        ratio of the real config (``real_config``: its dict, when one is at hand) over ``tiny_arch``."""
        arch = {k: v for k, v in arch.items() if k not in SIZE_KEYS}
        if real_config is None:
            return arch
        for key in KEEP_FROM_REAL:
            if real_config.get(key) is not None:
                arch.setdefault(key, real_config[key])
        heads = int(self.tiny_arch.get("num_attention_heads", 4))
        real_heads, real_kv = real_config.get("num_attention_heads"), real_config.get("num_key_value_heads")
        if real_heads and real_kv and "num_key_value_heads" in self.tiny_arch:
            kv = max(1, heads * int(real_kv) // int(real_heads))  # keep the query/key-value ratio
            while heads % kv:
                kv -= 1
            arch.setdefault("num_key_value_heads", kv)
        return arch

    # tokenizers ---------------------------------------------------------------------------
    def special_tokens(self) -> dict[str, str]:
        roles = {"bos_token": self.bos_token, "eos_token": self.eos_token,
                 "pad_token": self.pad_token, "unk_token": self.unk_token}
        return {k: v for k, v in roles.items() if v}

    def load_tokenizer(self, path: str):
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(_require_dir(path, "model.llm.tokenizer", "tokenizer"))
        if tok.pad_token is None:
            # families without a pad token (Llama, Phi-2): pad with unk or eos; padding is masked
            tok.pad_token = tok.unk_token or tok.eos_token
        return tok

    def train_tokenizer(self, texts, vocab_size: int):
        from .tokenizer import train_bpe_tokenizer

        specials = self.special_tokens()
        tok = train_bpe_tokenizer(
            texts, vocab_size, list(dict.fromkeys([*specials.values(), *self.extra_special_tokens]))
        )
        tok.add_special_tokens({k: v for k, v in specials.items()})
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        return tok

    def describe(self) -> str:
        return f"{self.model_type} architecture, template {self.default_template}"


def _require_dir(path: str, key: str, need: str = "config") -> str:
    """``path`` as a local folder: itself, or a hub repo id's cached snapshot (gemfactory.hub)."""
    if hub.is_hub_ref(path):
        return hub.resolve(path, key, need)
    if not Path(path).is_dir():
        raise ConfigError(f"{key}: {path!r} is not a local folder, nor a Hugging Face repo id (ORG/NAME[@REVISION])")
    return path
