"""The connector contract: encoder tokens ``[B, N, in_dim]`` -> LLM tokens ``[B, output_tokens(N), out_dim]``.

A connector is built as ``cls(in_dim, out_dim, **options)`` from ``model.connectors.<modality>``.
It declares the option names it accepts in ``OPTIONS``; any other option is a :class:`ConfigError`
naming the connector and the options it does take. A connector that changes the token count
(e.g. a resampler) overrides :meth:`output_tokens` and sets ``changes_token_count``.
"""
from __future__ import annotations

from torch import nn

from ..errors import ConfigError


class Connector(nn.Module):
    """Base of every connector; concrete classes may also derive from a torch layer (nn.Linear,
    nn.Sequential) so that their weights keep plain names in checkpoints."""

    name: str = "connector"           # the registry name, used in error messages
    OPTIONS: tuple[str, ...] = ()     # option names cls(in_dim, out_dim, **options) accepts
    changes_token_count: bool = False

    in_dim: int
    out_dim: int

    @classmethod
    def check_options(cls, options: dict) -> dict:
        """``options`` unchanged, or a ConfigError naming the first unknown option."""
        unknown = sorted(set(options) - set(cls.OPTIONS))
        if unknown:
            expected = ", ".join(cls.OPTIONS) if cls.OPTIONS else "none"
            raise ConfigError(f"connector {cls.name!r}: unknown option {unknown[0]!r} "
                              f"(options it takes: {expected})")
        return options

    @classmethod
    def tiny_options(cls, options: dict) -> dict:
        """The options of this connector's test-size twin (the LLM and encoders shrink around it)."""
        return dict(options)

    def output_tokens(self, n_in: int) -> int:
        """Tokens per input handed to the LLM when the encoder gives ``n_in``."""
        return n_in

    def set_dims(self, in_dim: int, out_dim: int) -> None:
        self.in_dim, self.out_dim = in_dim, out_dim


def depth_family(match, base: type, doc: str) -> type:
    """The connector class ``base`` at depth N = ``match.group(1)`` (1..16), named by the match."""
    depth = int(match.group(1))
    if not 1 <= depth <= 16:
        raise ConfigError(f"connector {match.group(0)!r}: N must be 1..16")
    attrs = {"depth": depth, "name": match.group(0), "__doc__": doc.format(N=depth)}
    return type(f"{base.__name__}{depth}", (base,), attrs)
