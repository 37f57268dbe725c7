"""What ``gemfactory list`` shows, read from source instead of importing the components.

Importing a component means importing torch (seconds); listing needs only names, origins and the
first docstring line. Built-ins are found by their ``@REGISTRY.register("name")`` /
``register_pattern(regex, "shown")`` decorators in ``gemfactory/<package>/*.py``; a plugin entry
point ``module:Attr`` is located with ``importlib.util.find_spec`` (which finds a module without
running it) and ``Attr`` read as a top-level class or function. A plugin whose entry point cannot
be read this way is imported as before. Import errors of plugins show only when they are imported:
``gemfactory list --plugins`` imports them all.
"""
from __future__ import annotations

import ast
import importlib.machinery
import importlib.util
from dataclasses import dataclass
from pathlib import Path

from .registry import BUILTIN, Registry


@dataclass(frozen=True)
class Listed:
    name: str
    origin: str
    version: str
    summary: str


def first_line(doc: str | None) -> str:
    lines = (doc or "").strip().splitlines()
    return lines[0] if lines else ""


def registry_names() -> dict[str, Registry]:
    """Variable name in gemfactory.registry -> registry (LLMS, TEMPLATES, ...)."""
    from . import registry

    return {k: v for k, v in vars(registry).items() if isinstance(v, Registry)}


def builtin_listing(reg: Registry) -> tuple[list[Listed], list[Listed]]:
    """(exact names sorted, name patterns) of the built-ins."""
    package = Path(__file__).parent.joinpath(*reg.package.split("."))
    variables = {name for name, r in registry_names().items() if r is reg}
    exact, patterns = {}, []
    for path in sorted(package.glob("*.py")):
        if path.name.startswith("_"):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        module_doc = first_line(ast.get_docstring(tree))
        for node in tree.body:
            if not isinstance(node, (ast.ClassDef, ast.FunctionDef)):
                continue
            for deco in node.decorator_list:
                found = _registration(deco, variables)
                if found is None:
                    continue
                method, args = found
                summary = first_line(ast.get_docstring(node)) or module_doc
                if method == "register":
                    exact[args[0]] = Listed(args[0], BUILTIN, "", summary)
                else:
                    patterns.append(Listed(args[1], BUILTIN, "", summary))
    return [exact[n] for n in sorted(exact)], patterns


def _registration(deco: ast.expr, variables: set[str]) -> tuple[str, list[str]] | None:
    """("register", [name]) / ("register_pattern", [regex, shown]) for a decorator on ``variables``."""
    if not (isinstance(deco, ast.Call) and isinstance(deco.func, ast.Attribute)
            and isinstance(deco.func.value, ast.Name) and deco.func.value.id in variables
            and deco.func.attr in ("register", "register_pattern")):
        return None
    args = [a.value for a in deco.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
    if len(args) != len(deco.args) or len(args) != (1 if deco.func.attr == "register" else 2):
        raise ValueError(f"cannot read registration {ast.unparse(deco)} without importing it")
    return deco.func.attr, args


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
