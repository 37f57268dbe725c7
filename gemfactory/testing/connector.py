"""Connectors: tokens [B, N, D_in] -> [B, N', D_llm] with N' = ``output_tokens(N)`` (gemfactory.connector.base)."""
from __future__ import annotations

import torch
from torch import nn

from ..connector.base import Connector
from ..errors import ConfigError
from ..registry import CONNECTORS
from .kit import Failed, Findings
from .modules import check_module, rejects_unknown, subclass_of
from .train_step import check_train_step, model_config

BATCH, TOKENS, IN_DIM, OUT_DIM = 2, 5, 24, 32  # OUT_DIM: the kit's tiny LLM width


def check(name: str, findings: Findings) -> None:
    cls = CONNECTORS.get(name)
    findings.need("contract", _contract, cls)
    in_dim = findings.need("widths", _widths, cls)
    findings.check("unknown option", rejects_unknown, lambda extra: cls(in_dim, OUT_DIM, **extra))

    def build(seed: int) -> nn.Module:
        torch.manual_seed(seed)
        return cls(in_dim, OUT_DIM)

    connector = findings.need("build", _build, build)
    tokens = findings.need("token count", _tokens, connector)
    check_module(findings, connector, build, (torch.randn(BATCH, TOKENS, in_dim),),
                 [("batch", BATCH), ("tokens", tokens), ("LLM width", OUT_DIM)])
    check_train_step(findings, model_config(connector=name), "connectors")


def _contract(cls) -> tuple:
    subclass_of(cls, Connector)
    return cls, f"{cls.__name__} is a Connector (options: {', '.join(cls.OPTIONS) or 'none'})"


def _widths(cls) -> tuple:
    try:
        cls(IN_DIM, OUT_DIM)
    except ConfigError:  # e.g. identity: the widths must match
        cls(OUT_DIM, OUT_DIM)
        return OUT_DIM, f"{OUT_DIM} -> {OUT_DIM} (refuses {IN_DIM} -> {OUT_DIM})"
    return IN_DIM, f"{IN_DIM} -> {OUT_DIM}"


def _build(build) -> tuple:
    connector = build(0)
    if not isinstance(connector, nn.Module):
        raise Failed(f"the connector must be an nn.Module built as cls(in_dim, out_dim), got {type(connector).__name__}")
    n = sum(p.numel() for p in connector.parameters())
    return connector, f"{type(connector).__name__}: {n:,} parameters"


def _tokens(connector) -> tuple:
    n = connector.output_tokens(TOKENS)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise Failed(f"output_tokens({TOKENS}) must be a positive int, got {n!r}")
    if (n != TOKENS) and not connector.changes_token_count:
        raise Failed(f"output_tokens({TOKENS}) = {n} but changes_token_count is False")
    return n, f"output_tokens({TOKENS}) = {n}"
