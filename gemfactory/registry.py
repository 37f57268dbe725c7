"""Exact-name registries of components, filled by decorators and by plugin entry points.

Built-in components live one per module under ``gemfactory/<package>/``; the registry imports
that package's modules on the first lookup, so adding a component never edits a central list.
Installed distributions add components through the entry-point group of the registry
(``gemfactory.llms`` ...); they are loaded lazily, one entry point at a time, and a broken one
only breaks lookups of its own name.
"""
from __future__ import annotations

import difflib
import fnmatch
import importlib
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from .errors import DuplicateComponent, GemError, PluginError, UnknownComponent
from .registry_index import BUILTIN, BuiltinIndex, scan_package


@dataclass(frozen=True)
class Entry:
    name: str
    obj: Any
    origin: str  # "gemfactory" for built-ins, else the distribution name
    version: str = ""


class Registry:
    def __init__(self, kind: str, package: str, group: str):
        self.kind = kind  # human name: "LLM", "vision tower", ...
        self.package = package  # gemfactory subpackage holding the built-ins
        self.group = group  # entry-point group
        self._builtins: dict[str, Entry] = {}
        self._plugins: dict[str, Entry] = {}  # keyed "distribution:name"
        self._plugin_errors: dict[str, str] = {}  # name -> message of a plugin that failed to load
        self._patterns: list[tuple[re.Pattern, str, Callable]] = []  # (regex, shown name, factory)
        self._loaded_builtins = False
        self._loaded_plugins = False
        self._index: BuiltinIndex | None = None

    # registration -------------------------------------------------------------------------
    def register(self, name: str) -> Callable[[Any], Any]:
        """Decorator registering a built-in component under an exact, lower-case name."""

        def deco(obj):
            self._add_builtin(name, obj)
            return obj

        return deco

    def register_pattern(self, pattern: str, shown: str) -> Callable[[Any], Any]:
        """Decorator for a family of names, e.g. ``mlp(\\d+)x_gelu``: the decorated factory gets the
        regex match and returns the component, which is then registered under the exact name."""

        def deco(factory):
            self._patterns.append((re.compile(pattern), shown, factory))
            return factory

        return deco

    def _add_builtin(self, name: str, obj: Any) -> None:
        if not name or name != name.strip() or ":" in name:
            raise ValueError(f"{self.kind} name {name!r} must be non-empty with no spaces or ':'")
        if name in self._builtins and self._builtins[name].obj is not obj:
            raise DuplicateComponent(
                f"{self.kind} {name!r} is already registered by "
                f"{_describe(self._builtins[name].obj)}; pick another name"
            )
        self._builtins[name] = Entry(name, obj, BUILTIN)

    def add_plugin(self, name: str, obj: Any, distribution: str, version: str = "") -> None:
        key = f"{distribution}:{name}"
        if key in self._plugins and self._plugins[key].obj is not obj:
            raise DuplicateComponent(f"{self.kind} {key!r} is registered twice")
        self._plugins[key] = Entry(name, obj, distribution, version)

    # loading ------------------------------------------------------------------------------
    def index(self) -> BuiltinIndex:
        """The built-in names read from the package's decorators (no import); loading checks them."""
        if self._index is None:
            self._index = scan_package(self.package)
        return self._index

    def _load_builtins(self) -> None:
        if self._loaded_builtins:
            return
        self._loaded_builtins = True
        index = self.index()
        for module in index.modules:
            importlib.import_module(module)
        modules = set(index.modules)
        from_package = {n for n, e in self._builtins.items() if getattr(e.obj, "__module__", "") in modules}
        unread = sorted((from_package - set(index.exact)) | (set(index.exact) - set(self._builtins)))
        if unread:  # every registration must be the decorator the index reads, or list would differ
            raise GemError(
                f"{self.kind} {unread[0]!r}: registered in gemfactory/{self.package.replace('.', '/')}/ other than by "
                f"a top-level @REGISTRY.register(\"literal name\") decorator, which gemfactory list reads")

    def _load_plugins(self) -> None:
        if self._loaded_plugins:
            return
        self._loaded_plugins = True
        from importlib_metadata import entry_points

        for ep in entry_points(group=self.group):
            dist = ep.dist.name if ep.dist is not None else "unknown-distribution"
            version = ep.dist.version if ep.dist is not None else ""
            try:
                obj = ep.load()
            except Exception as exc:  # a broken plugin must not break unrelated lookups
                self._plugin_errors[ep.name] = (
                    f"plugin {self.kind} {ep.name!r} from distribution {dist!r} failed to load "
                    f"(entry point {ep.value!r} in group {self.group!r}): "
                    f"{type(exc).__name__}: {' '.join(str(exc).split())}"  # one line, whatever exc says
                )
                continue
            self.add_plugin(ep.name, obj, dist, version)

    def _ensure_loaded(self) -> None:
        self._load_builtins()
        self._load_plugins()

    # lookup -------------------------------------------------------------------------------
    def get(self, name: str) -> Any:
        return self.entry(name).obj

    def entry(self, name: str) -> Entry:
        self._ensure_loaded()
        if ":" in name:
            dist, _, short = name.partition(":")
            if dist == BUILTIN and short in self._builtins:
                return self._builtins[short]
            if name in self._plugins:
                return self._plugins[name]
            self._raise_unknown(name)
        clashing = [e for k, e in self._plugins.items() if e.name == name]
        if name in self._builtins:
            if clashing:
                raise DuplicateComponent(
                    f"{self.kind} {name!r} is both built in and provided by "
                    f"{', '.join(repr(e.origin) for e in clashing)}; name it fully, e.g. "
                    f"'{BUILTIN}:{name}' or '{clashing[0].origin}:{name}'"
                )
            return self._builtins[name]
        if len(clashing) == 1:
            return clashing[0]
        if len(clashing) > 1:
            raise DuplicateComponent(
                f"{self.kind} {name!r} is provided by several plugins "
                f"({', '.join(e.origin for e in clashing)}); name it as 'distribution:{name}'"
            )
        if name in self._plugin_errors:
            raise PluginError(self._plugin_errors[name])
        for regex, _, factory in self._patterns:
            match = regex.fullmatch(name)
            if match:
                self._add_builtin(name, factory(match))
                return self._builtins[name]
        self._raise_unknown(name)

    def check_name(self, name: str) -> None:
        """Raise UnknownComponent (with suggestions) when no lookup could find ``name``, importing
        nothing: the index's built-ins and name patterns, and the plugins' entry-point names
        (whether those load, or clash, shows on lookup). Recipes are checked with it on load."""
        from importlib_metadata import entry_points

        plugins = {(ep.dist.name if ep.dist is not None else "", ep.name) for ep in entry_points(group=self.group)}
        builtins = set(self.index().exact) | set(self._builtins)
        dist, _, short = name.rpartition(":")
        if dist in ("", BUILTIN) and (short in builtins or any(re.fullmatch(regex, short)
                                                                 for regex, _ in self.index().patterns)):
            return
        if any(n == short and dist in ("", d) for d, n in plugins):
            return
        shown = [listed.name for _, listed in self.index().patterns]
        self._raise_unknown(name, sorted(builtins | set(shown) | {n for _, n in plugins}))

    def _raise_unknown(self, name: str, known: list[str] | None = None):
        known = self.names() if known is None else known
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise UnknownComponent(
            f"unknown {self.kind} {name!r}{hint} (registered: {', '.join(known) or 'none'})"
        )

    def names(self) -> list[str]:
        self._ensure_loaded()
        names = set(self._builtins) | {shown for _, shown, _ in self._patterns}
        for key, e in self._plugins.items():
            names.add(key if e.name in self._builtins else e.name)
        return sorted(names)

    def list(self, pattern: str = "*") -> list[str]:
        """Registered names matching a shell-style wildcard (``clip*``, ``*llava*``), sorted."""
        return matching(self.names(), pattern)

    def entries(self) -> Iterator[Entry]:
        self._ensure_loaded()
        yield from (self._builtins[n] for n in sorted(self._builtins))
        yield from (Entry(shown, factory, BUILTIN) for _, shown, factory in self._patterns)
        yield from (self._plugins[k] for k in sorted(self._plugins))

    def plugin_errors(self) -> dict[str, str]:
        self._ensure_loaded()
        return dict(self._plugin_errors)

    def __contains__(self, name: str) -> bool:
        try:
            self.entry(name)
            return True
        except (UnknownComponent, PluginError, DuplicateComponent):
            return False


def matching(names, pattern: str) -> list[str]:
    """``names`` that match the wildcard ``pattern`` (case-sensitive, as names are exact)."""
    return sorted(n for n in names if fnmatch.fnmatchcase(n, pattern))


def _describe(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"


LLMS = Registry("LLM", "llm", "gemfactory.llms")
VISION_TOWERS = Registry("vision tower", "vision", "gemfactory.vision_towers")
ECG_ENCODERS = Registry("ECG encoder", "ecg", "gemfactory.ecg_encoders")
CONNECTORS = Registry("connector", "connector", "gemfactory.connectors")
TEMPLATES = Registry("template", "template", "gemfactory.templates")
EVAL_TASKS = Registry("eval task", "eval.tasks", "gemfactory.eval_tasks")
TUNE_TYPES = Registry("tune type", "tune", "gemfactory.tune_types")

REGISTRIES: dict[str, Registry] = {
    "llms": LLMS,
    "vision_towers": VISION_TOWERS,
    "ecg_encoders": ECG_ENCODERS,
    "connectors": CONNECTORS,
    "templates": TEMPLATES,
    "eval_tasks": EVAL_TASKS,
    "tune_types": TUNE_TYPES,
}
