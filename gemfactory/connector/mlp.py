"""``mlp{N}x_gelu``: N linear layers with GELU between them (LLaVA-1.5 uses N = 2)."""
from torch import nn

from ..registry import CONNECTORS
from .base import Connector, depth_family


class MLPGelu(Connector, nn.Sequential):
    depth = 2

    def __init__(self, in_dim: int, out_dim: int, **options):
        self.check_options(options)
        layers = [nn.Linear(in_dim, out_dim)]
        for _ in range(self.depth - 1):
            layers += [nn.GELU(), nn.Linear(out_dim, out_dim)]
        nn.Sequential.__init__(self, *layers)
        self.set_dims(in_dim, out_dim)


@CONNECTORS.register_pattern(r"mlp(\d+)x_gelu", "mlp{N}x_gelu")
def mlp_family(match):
    """N linear layers with GELU between them (mlp2x_gelu is LLaVA-1.5's projector)"""
    return depth_family(match, MLPGelu, "{N} linear layers with GELU")
