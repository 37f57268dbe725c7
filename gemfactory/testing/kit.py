"""Findings, the check runner and the entry points of the conformance kit."""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable

import torch

from ..errors import ConfigError, GemError, UnknownComponent
from ..registry import BUILTIN, REGISTRIES

# kind -> module of this package whose ``check(name, findings)`` checks a component of that kind
CHECKERS = {
    "llms": "llm", "vision_towers": "vision", "ecg_encoders": "ecg", "connectors": "connector",
    "templates": "template", "eval_tasks": "eval_task", "tune_types": "tune_type",
}


@dataclass(frozen=True)
class Finding:
    check: str  # what was checked, e.g. "output"
    ok: bool
    detail: str  # one line: what was found; on a failure also what was expected

    def __str__(self) -> str:
        return f"{'ok  ' if self.ok else 'FAIL'} {self.check}: {self.detail}"


class Failed(Exception):
    """Raised inside a check; its message becomes the finding's detail."""


class ConformanceError(GemError, AssertionError):
    """A component failed the kit (an AssertionError too, so pytest reports it as a failed assert)."""


class _Stop(Exception):
    """A check that later checks depend on failed."""


class Findings(list):
    def check(self, name: str, fn: Callable[..., str], *args) -> None:
        """Run one check (``fn`` returns a one-line detail or raises) and record its finding."""
        try:
            self.append(Finding(name, True, fn(*args)))
        except Exception as exc:  # whatever the component raises fails this check, not the kit
            self.append(Finding(name, False, _one_line(exc)))

    def need(self, name: str, fn: Callable[..., tuple], *args):
        """Run a check whose value later checks use (``fn`` returns ``(value, detail)``)."""
        try:
            value, detail = fn(*args)
        except Exception as exc:
            self.append(Finding(name, False, _one_line(exc)))
            raise _Stop from None
        self.append(Finding(name, True, detail))
        return value


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if isinstance(exc, (Failed, GemError)) else f"{type(exc).__name__}: {text}"


def check_component(kind: str, name: str) -> list[Finding]:
    """Build the registered component ``name`` of ``kind`` at tiny scale and check it; one finding
    per check. Raises a GemError when there is no such kind or component (or its plugin is broken)."""
    if kind not in REGISTRIES:
        raise ConfigError(f"unknown component kind {kind!r}; expected one of {', '.join(REGISTRIES)}")
    REGISTRIES[kind].entry(name)  # unknown names, clashes and broken plugins raise their own error
    checker = importlib.import_module(f"{__package__}.{CHECKERS[kind]}")
    findings = Findings()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tensors this small only lose time to thread hand-offs
    try:
        with torch.random.fork_rng(devices=[]):  # the caller's random state is left as it was
            checker.check(name, findings)
    except _Stop:
        pass
    finally:
        torch.set_num_threads(threads)
    return list(findings)


def assert_conforms(kind: str, name: str) -> list[Finding]:
    """pytest helper: the findings when every check passes, else a ConformanceError listing the failures."""
    findings = check_component(kind, name)
    failed = [f for f in findings if not f.ok]
    if failed:
        raise ConformanceError(
            f"{kind} {name!r}: {len(failed)} of {len(findings)} checks failed: "
            + "; ".join(f"{f.check}: {f.detail}" for f in failed)
        )
    return findings


def find_kind(name: str) -> str:
    """The one kind that has a component ``name``."""
    found = []
    for kind, reg in REGISTRIES.items():
        try:
            reg.entry(name)
        except UnknownComponent:
            continue
        found.append(kind)
    if len(found) > 1:
        raise ConfigError(f"{name!r} names a component of several kinds ({', '.join(found)}); pick one with --kind")
    if not found:
        raise UnknownComponent(
            f"no component named {name!r} in any registry ({', '.join(REGISTRIES)}); see gemfactory list"
        )
    return found[0]


def registered_components() -> list[tuple[str, str]]:
    """(kind, name) of every registered component: plugins by their full ``distribution:name``, a
    name family such as ``mlp{N}x_gelu`` by its member with N = 2."""
    return [(kind, e.name.replace("{N}", "2") if e.origin == BUILTIN else f"{e.origin}:{e.name}")
            for kind, reg in REGISTRIES.items() for e in reg.entries()]
