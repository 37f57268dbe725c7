"""``identity``: hands the encoder's tokens to the LLM unchanged (widths must already match)."""
from torch import nn

from ..errors import ConfigError
from ..registry import CONNECTORS
from .base import Connector


@CONNECTORS.register("identity")
class Identity(Connector, nn.Identity):
    """No projection: the encoder width must equal the LLM hidden size."""

    name = "identity"

    def __init__(self, in_dim: int, out_dim: int, **options):
        self.check_options(options)
        if in_dim != out_dim:
            raise ConfigError(
                f"connector 'identity': the encoder gives {in_dim}-wide tokens but the LLM hidden size "
                f"is {out_dim}; identity needs them equal (use linear or mlp2x_gelu)"
            )
        nn.Identity.__init__(self)
        self.set_dims(in_dim, out_dim)
