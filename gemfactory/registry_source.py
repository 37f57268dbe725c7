"""What ``gemfactory list`` shows, read from source instead of importing the components.

Importing a component means importing torch (seconds); listing needs only names, origins and the
first docstring line. Built-ins come from the registry's index of its decorators
(:mod:`gemfactory.registry_index`, the same index loading checks against); a plugin entry
point ``module:Attr`` is located with ``importlib.util.find_spec`` (which finds a module without
running it) and ``Attr`` read as a top-level class or function. A plugin whose entry point cannot
be read this way is imported as before. Import errors of plugins show only when they are imported:
``gemfactory list --plugins`` imports them all.
"""
from __future__ import annotations

import ast
import importlib.machinery
import importlib.util
from pathlib import Path

from .registry import Registry
from .registry_index import Listed, first_line


def builtin_listing(reg: Registry) -> tuple[list[Listed], list[Listed]]:
    """(exact names sorted, name patterns) of the built-ins, from the registry's own index."""
    index = reg.index()
    return [index.exact[n] for n in sorted(index.exact)], [listed for _, listed in index.patterns]


def plugin_source_summary(value: str) -> str | None:
    """First docstring line of entry point ``module:Attr`` read from its source file, or None
    when the file or a top-level ``Attr`` cannot be found that way."""
    module, _, attr = value.partition(":")
    attr = attr.strip()
    if not attr or "." in attr:
        return None
    path = module_file(module.strip())
    if path is None:
        return None
    try:
        tree = ast.parse(Path(path).read_text(encoding="utf-8"))
    except (OSError, SyntaxError, UnicodeError, ValueError):
        return None
    for node in tree.body:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef)) and node.name == attr:
            return first_line(ast.get_docstring(node)) or first_line(ast.get_docstring(tree))
    return None


def module_file(name: str) -> str | None:
    """Path of module ``a.b.c`` found without executing ``a`` or ``a.b``."""
    top, *rest = name.split(".")
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return None
    for part in rest:
        if spec is None or not spec.submodule_search_locations:
            return None
        spec = importlib.machinery.PathFinder.find_spec(part, list(spec.submodule_search_locations))
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return None
    return spec.origin


def plugin_listing(reg: Registry) -> tuple[list[Listed], list]:
    """(plugins read from source, entry points that need importing)."""
    from importlib_metadata import entry_points

    listed, unread = [], []
    for ep in entry_points(group=reg.group):
        summary = plugin_source_summary(ep.value)
        if summary is None:
            unread.append(ep)
            continue
        dist = ep.dist.name if ep.dist is not None else "unknown-distribution"
        listed.append(Listed(ep.name, dist, ep.dist.version if ep.dist is not None else "", summary))
    return sorted(listed, key=lambda e: f"{e.origin}:{e.name}"), unread
