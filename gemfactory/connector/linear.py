"""One linear projection from encoder width to LLM width (LLaVA-1's projector)."""
from torch import nn

from ..registry import CONNECTORS
from .base import Connector


@CONNECTORS.register("linear")
class Linear(Connector, nn.Linear):
    """One linear projection (LLaVA-1's projector)."""

    name = "linear"

    def __init__(self, in_dim: int, out_dim: int, **options):
        self.check_options(options)
        nn.Linear.__init__(self, in_dim, out_dim)
        self.set_dims(in_dim, out_dim)
