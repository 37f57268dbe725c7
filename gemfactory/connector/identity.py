"""``identity``: hands the encoder's tokens to the LLM unchanged (widths must already match)."""
from torch import nn

from ..errors import ConfigError
from ..registry import CONNECTORS


@CONNECTORS.register("identity")
class Identity(nn.Identity):
    """No projection: the encoder width must equal the LLM hidden size."""

    def __init__(self, in_dim: int, out_dim: int, **options):
        if options:
            raise ConfigError(f"connector 'identity': takes no options, got {sorted(options)}")
        if in_dim != out_dim:
            raise ConfigError(
                f"connector 'identity': the encoder gives {in_dim}-wide tokens but the LLM hidden size "
                f"is {out_dim}; identity needs them equal (use linear or mlp2x_gelu)"
            )
        super().__init__()
        self.in_dim = self.out_dim = in_dim
