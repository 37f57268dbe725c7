"""``partial``: the last blocks of a component and/or named submodules train (``stages.<n>.partial``)."""
from torch import nn

from ..errors import ConfigError
from ..registry import TUNE_TYPES
from .base import TuneType, main_layer_stack


@TUNE_TYPES.register("partial")
class Partial(TuneType):
    """The last N blocks of the component's main layer stack and/or named submodules train."""

    name = "partial"

    @classmethod
    def example_stage(cls, component: str, module: nn.Module) -> dict:
        if main_layer_stack(module) is not None:
            return {"partial": {component: {"last_n_layers": 1}}}
        return {"partial": {component: {"modules": [next(name for name, _ in module.named_parameters())]}}}

    def apply(self, model, parts, stage) -> None:
        for comp, module in parts.items():
            module.requires_grad_(False)
            where = f"stages.{stage.name}.partial.{comp}"
            spec = stage.partial[comp]
            if spec.last_n_layers is not None:
                _train_last_layers(module, comp, spec.last_n_layers, where)
            _train_named(module, comp, spec.modules or [], where)


def _train_last_layers(module: nn.Module, comp: str, n: int, where: str) -> None:
    found = main_layer_stack(module)
    if found is None:
        raise ConfigError(f"{where}.last_n_layers: the {comp} component has no stack of layers")
    stack_name, stack = found
    if n > len(stack):
        raise ConfigError(f"{where}.last_n_layers: {n} is more than the {len(stack)} layers of {comp} ({stack_name})")
    for block in list(stack)[-n:]:
        block.requires_grad_(True)


def _train_named(module: nn.Module, comp: str, names: list[str], where: str) -> None:
    params = dict(module.named_parameters())
    for i, name in enumerate(names):
        try:
            module.get_submodule(name).requires_grad_(True)
            continue
        except AttributeError:
            pass
        if name in params:
            params[name].requires_grad_(True)
            continue
        tops = sorted({n.split(".")[0] for n, _ in module.named_children()})
        raise ConfigError(f"{where}.modules[{i}]: {name!r} is neither a module nor a parameter of {comp} "
                          f"(top-level modules: {', '.join(tops)})")
