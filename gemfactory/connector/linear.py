"""One linear projection from encoder width to LLM width (LLaVA-1's projector)."""
from torch import nn

from ..registry import CONNECTORS


@CONNECTORS.register("linear")
class Linear(nn.Linear):
    def __init__(self, in_dim: int, out_dim: int):
        super().__init__(in_dim, out_dim)
