"""TinyLLaVA's ``phi`` style: Vicuna-like turns, no BOS, ``<|endoftext|>`` closes each reply."""
from ..registry import TEMPLATES
from .vicuna_v1 import VicunaV1


@TEMPLATES.register("phi")
class PhiTemplate(VicunaV1):
    name = "phi"
    add_bos = False
