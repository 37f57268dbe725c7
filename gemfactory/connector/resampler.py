"""``resampler``: a Perceiver-style resampler with a fixed number of output tokens.

``num_queries`` learned latent queries (default 64) read the encoder tokens through ``depth``
cross-attention layers (default 2), each followed by an MLP, pre-norm with residuals; the
encoder tokens are first projected to the LLM width. Whatever the encoder's token count, the
LLM sees ``num_queries`` tokens per input (Flamingo / Qwen-VL / mPLUG-Owl style compression).
``heads`` must divide the LLM width; by default it is the largest of 8, 4, 2, 1 that does.
"""
from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError
from ..registry import CONNECTORS
from .base import Connector


class _CrossAttentionLayer(nn.Module):
    def __init__(self, width: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.norm_q = nn.LayerNorm(width)
        self.norm_kv = nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.norm_mlp = nn.LayerNorm(width)
        hidden = int(width * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, width))

    def forward(self, latents: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        kv = self.norm_kv(tokens)
        latents = latents + self.attn(self.norm_q(latents), kv, kv, need_weights=False)[0]
        return latents + self.mlp(self.norm_mlp(latents))


@CONNECTORS.register("resampler")
class Resampler(Connector):
    """Perceiver resampler: num_queries learned queries cross-attend to the encoder tokens."""

    name = "resampler"
    OPTIONS = ("num_queries", "depth", "heads", "mlp_ratio")
    changes_token_count = True

    def __init__(self, in_dim: int, out_dim: int, num_queries: int = 64, depth: int = 2,
                 heads: int | None = None, mlp_ratio: float = 4.0, **unknown):
        super().__init__()
        self.check_options(unknown)
        self.set_dims(in_dim, out_dim)
        for key, value in (("num_queries", num_queries), ("depth", depth)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"connector 'resampler': {key} must be a positive integer, got {value!r}")
        if heads is None:
            heads = next(h for h in (8, 4, 2, 1) if out_dim % h == 0)
        if isinstance(heads, bool) or not isinstance(heads, int) or heads < 1 or out_dim % heads:
            raise ConfigError(
                f"connector 'resampler': heads {heads!r} must be a positive divisor of the LLM hidden size {out_dim}"
            )
        if not mlp_ratio > 0:
            raise ConfigError(f"connector 'resampler': mlp_ratio must be > 0, got {mlp_ratio!r}")
        self.num_queries = num_queries
        self.proj = nn.Linear(in_dim, out_dim)
        self.queries = nn.Parameter(torch.randn(num_queries, out_dim) * 0.02)
        self.layers = nn.ModuleList(_CrossAttentionLayer(out_dim, heads, mlp_ratio) for _ in range(depth))
        self.norm_out = nn.LayerNorm(out_dim)

    @classmethod
    def tiny_options(cls, options: dict) -> dict:
        options = dict(options)
        options["num_queries"] = min(int(options.get("num_queries", 64)), 8)
        options.pop("heads", None)  # must divide the LLM width, which shrinks
        return options

    def output_tokens(self, n_in: int) -> int:
        """Tokens per input handed to the LLM, whatever the encoder's count ``n_in``."""
        return self.num_queries

    def init_extra_parameters(self, init) -> None:
        init.normal_(self.queries, std=0.02)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        tokens = self.proj(tokens.to(self.proj.weight.dtype))
        latents = self.queries.to(tokens.dtype).expand(tokens.shape[0], -1, -1)
        for layer in self.layers:
            latents = layer(latents, tokens)
        return self.norm_out(latents)
