"""``mlp{N}x_gelu``: N linear layers with GELU between them (LLaVA-1.5 uses N = 2)."""
from torch import nn

from ..registry import CONNECTORS


class MLPGelu(nn.Sequential):
    depth = 2

    def __init__(self, in_dim: int, out_dim: int):
        layers = [nn.Linear(in_dim, out_dim)]
        for _ in range(self.depth - 1):
            layers += [nn.GELU(), nn.Linear(out_dim, out_dim)]
        super().__init__(*layers)


@CONNECTORS.register("mlp2x_gelu")
class MLP2xGelu(MLPGelu):
    depth = 2
