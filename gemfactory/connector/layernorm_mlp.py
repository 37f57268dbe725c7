"""``layernorm_mlp{N}x_gelu``: LayerNorm over the encoder tokens, then ``mlp{N}x_gelu``.

ViP-LLaVA's projector for its five-layer CLIP fusion (``SimpleFeatureSingleModel``: ``clip_layernorm``
then ``final_linear``) and transformers' ``VipLlavaMultiModalProjector`` (``projector_layernorm``,
``linear_1``, ``linear_2``); LayerNorm eps 1e-5 as both use.
"""
from torch import nn

from ..registry import CONNECTORS
from .base import Connector, depth_family


class LayerNormMLP(Connector):
    depth = 2

    def __init__(self, in_dim: int, out_dim: int, **options):
        self.check_options(options)
        super().__init__()
        self.norm = nn.LayerNorm(in_dim, eps=1e-5)
        layers = [nn.Linear(in_dim, out_dim)]
        for _ in range(self.depth - 1):  # as mlp{N}x_gelu
            layers += [nn.GELU(), nn.Linear(out_dim, out_dim)]
        self.mlp = nn.Sequential(*layers)
        self.set_dims(in_dim, out_dim)

    def forward(self, x):
        return self.mlp(self.norm(x))


@CONNECTORS.register_pattern(r"layernorm_mlp(\d+)x_gelu", "layernorm_mlp{N}x_gelu")
def layernorm_mlp_family(match):
    """LayerNorm, then N linear layers with GELU between them (ViP-LLaVA's projector with N = 2)"""
    return depth_family(match, LayerNormMLP, "LayerNorm, then {N} linear layers with GELU")
