"""``full``: every weight of the component trains."""
from ..registry import TUNE_TYPES
from .base import TuneType


@TUNE_TYPES.register("full")
class Full(TuneType):
    """Every parameter of the component trains."""

    name = "full"

    def apply(self, model, parts, stage) -> None:
        for module in parts.values():
            module.requires_grad_(True)
