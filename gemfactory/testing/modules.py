"""Checks every nn.Module component gets: output, determinism, state-dict round trip, gradients."""
from __future__ import annotations

import io
import json
from typing import Callable

import torch
from torch import nn

from ..errors import ConfigError
from .kit import Failed, Findings


def positive_int(obj, attr: str) -> int:
    """``obj.attr``, which must be a positive int."""
    value = getattr(obj, attr, None)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise Failed(f"{type(obj).__name__}.{attr} must be a positive int, got {value!r}")
    return value


def saved_as_json(value, what: str) -> None:
    """``value`` goes into config.json, so it must be plain JSON."""
    try:
        json.dumps(value)
    except (TypeError, ValueError) as exc:
        raise Failed(f"{what} must be JSON (saved in config.json): {exc}") from None


def subclass_of(obj, base: type) -> type:
    if not (isinstance(obj, type) and issubclass(obj, base)):
        raise Failed(f"{obj!r} is not a subclass of {base.__module__}.{base.__qualname__}")
    return obj


def rejects_unknown(build: Callable[[dict], object]) -> str:
    """``build(extra_options)`` with one option nobody declares must raise a one-line ConfigError."""
    try:
        build({"no_such_option": 1})
    except ConfigError as exc:
        if "no_such_option" not in str(exc):
            raise Failed(f"the ConfigError for an unknown option does not name it: {exc}") from None
        return f"an unknown option is refused: {' '.join(str(exc).split())}"
    raise Failed("an unknown option 'no_such_option' was accepted; expected a ConfigError naming it")


def check_module(findings: Findings, module: nn.Module, build: Callable[[int], nn.Module], inputs: tuple,
                 expected: list[tuple[str, int]], run: Callable | None = None) -> None:
    """``build(seed)`` makes a fresh copy, ``inputs`` are the forward's positional arguments,
    ``expected`` the output shape as (meaning, size) pairs; ``run(module, *inputs)`` gives the
    output tensor (default: the forward itself)."""
    run = run or (lambda m, *x: m(*x))
    findings.check("output", _output, module, run, inputs, expected)
    findings.check("determinism", _determinism, module, run, inputs)
    findings.check("state dict round trip", _round_trip, module, build, run, inputs)
    findings.check("gradients", _gradients, module, run, inputs)


def _eval_output(module, run, inputs) -> torch.Tensor:
    module.eval()
    with torch.no_grad():
        return run(module, *inputs)


def _output(module, run, inputs, expected) -> str:
    out = _eval_output(module, run, inputs)
    want = "[" + ", ".join(f"{what} {n}" for what, n in expected) + "]"
    if not isinstance(out, torch.Tensor):
        raise Failed(f"forward returned {type(out).__name__}; expected a tensor {want}")
    if list(out.shape) != [n for _, n in expected]:
        raise Failed(f"expected shape {want}, got {list(out.shape)}")
    dtype = next(module.parameters(), torch.empty(0)).dtype
    if out.dtype != dtype:
        raise Failed(f"expected dtype {dtype} (that of the parameters), got {out.dtype}")
    if not torch.isfinite(out).all():
        raise Failed("the output holds NaN or inf values")
    return f"{list(out.shape)} {want}, {str(out.dtype).removeprefix('torch.')}, finite"


def _determinism(module, run, inputs) -> str:
    first, second = _eval_output(module, run, inputs), _eval_output(module, run, inputs)
    if not torch.equal(first, second):
        raise Failed(f"two eval-mode forwards of the same input differ (by up to {_max_diff(first, second):.3g})")
    return "same input, same output in eval mode"


def _round_trip(module, build, run, inputs) -> str:
    buffer = io.BytesIO()
    torch.save(module.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    copy = build(1)  # another seed: only the loaded state can make it equal
    copy.load_state_dict(state)
    before, after = _eval_output(module, run, inputs), _eval_output(copy, run, inputs)
    if not torch.equal(before, after):
        raise Failed(
            f"a fresh copy loaded with the saved state dict gives other outputs (by up to "
            f"{_max_diff(before, after):.3g}); is some state kept outside parameters and buffers?"
        )
    return f"{len(state)} tensors saved, loaded into a fresh copy: identical outputs"


def _gradients(module, run, inputs) -> str:
    trainable = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
    if not trainable:
        return "no trainable parameters"
    module.train()
    module.zero_grad(set_to_none=True)
    out = run(module, *inputs)
    if not out.requires_grad:
        raise Failed("the output does not depend on any trainable parameter (no autograd graph)")
    out.float().square().mean().backward()
    bad = [n for n, p in trainable if p.grad is not None and not torch.isfinite(p.grad).all()]
    if bad:
        raise Failed(f"non-finite gradient in {', '.join(bad[:3])}")
    unused = [n for n, p in trainable if p.grad is None]
    if len(unused) == len(trainable):
        raise Failed(f"none of the {len(trainable)} trainable parameter tensors gets a gradient")
    note = f" (not used by the output: {', '.join(unused[:3])}{', ...' if len(unused) > 3 else ''})" if unused else ""
    return f"{len(trainable) - len(unused)} of {len(trainable)} trainable tensors get a finite gradient{note}"


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.float() - b.float()).abs().max().item() if a.shape == b.shape else float("inf")
