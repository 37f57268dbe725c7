"""``pooled_linear``: average each ``stride`` neighbouring tokens, then one linear projection.

It shortens what the LLM reads: N encoder tokens -> ceil(N / stride) tokens (the last group may be
shorter). A connector that changes the token count says so with ``changes_token_count`` and
``output_tokens``.
"""
from __future__ import annotations

import torch
from torch import nn

from gemfactory.connector.base import Connector
from gemfactory.errors import ConfigError


class PooledLinear(Connector):
    """Average-pool `stride` neighbouring tokens, then project to the LLM width."""

    name = "pooled_linear"
    OPTIONS = ("stride",)
    changes_token_count = True

    def __init__(self, in_dim: int, out_dim: int, stride: int = 2, **unknown):
        super().__init__()
        self.check_options(unknown)
        self.set_dims(in_dim, out_dim)
        if isinstance(stride, bool) or not isinstance(stride, int) or stride < 1:
            raise ConfigError(f"connector 'pooled_linear': stride must be a positive integer, got {stride!r}")
        self.stride = stride
        self.pool = nn.AvgPool1d(stride, stride, ceil_mode=True)
        self.proj = nn.Linear(in_dim, out_dim)

    def output_tokens(self, n_in: int) -> int:
        return -(-n_in // self.stride)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        pooled = self.pool(tokens.to(self.proj.weight.dtype).transpose(1, 2)).transpose(1, 2)
        return self.proj(pooled)
