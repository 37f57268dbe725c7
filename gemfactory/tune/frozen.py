"""``frozen``: the component's weights do not train."""
from ..registry import TUNE_TYPES
from .base import TuneType


@TUNE_TYPES.register("frozen")
class Frozen(TuneType):
    """No parameter of the component trains."""

    name = "frozen"
    trains = False

    def apply(self, model, parts, stage) -> None:
        for module in parts.values():
            module.requires_grad_(False)
