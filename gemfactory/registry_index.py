"""The built-in names of a registry, read once from its package's source.

A built-in component is registered by a decorator with a literal name,
``@LLMS.register("vicuna")`` or ``@CONNECTORS.register_pattern(r"mlp(\\d+)x_gelu", "mlp{N}x_gelu")``,
on a top-level class or function of a module in ``gemfactory/<package>/``. This module reads
those decorators (and the first docstring line) without importing anything, so ``gemfactory list``
needs no torch; the registry imports the same modules and checks that what they register is what
this index read (:meth:`gemfactory.registry.Registry.index`): one source, the decorators.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path

BUILTIN = "gemfactory"
PACKAGE_ROOT = Path(__file__).parent


@dataclass(frozen=True)
class Listed:
    name: str
    origin: str
    version: str
    summary: str
    module: str = ""  # dotted module of a built-in


@dataclass
class BuiltinIndex:
    exact: dict[str, Listed] = field(default_factory=dict)
    patterns: list[tuple[str, Listed]] = field(default_factory=list)  # (regex, listing by shown name)
    modules: list[str] = field(default_factory=list)  # every public module of the package, in file order


def first_line(doc: str | None) -> str:
    lines = (doc or "").strip().splitlines()
    return lines[0] if lines else ""


def scan_package(package: str) -> BuiltinIndex:
    """The registrations in ``gemfactory/<package>/*.py`` (``package`` dotted, e.g. ``eval.tasks``)."""
    index = BuiltinIndex()
    for path in sorted(PACKAGE_ROOT.joinpath(*package.split(".")).glob("*.py")):
        if path.name.startswith("_"):
            continue
        module = f"{BUILTIN}.{package}.{path.stem}"
        index.modules.append(module)
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        module_doc = first_line(ast.get_docstring(tree))
        for node in tree.body:
            if isinstance(node, (ast.ClassDef, ast.FunctionDef)):
                summary = first_line(ast.get_docstring(node)) or module_doc
                for method, args in filter(None, map(_registration, node.decorator_list)):
                    if method == "register":
                        index.exact[args[0]] = Listed(args[0], BUILTIN, "", summary, module)
                    else:
                        index.patterns.append((args[0], Listed(args[1], BUILTIN, "", summary, module)))
    return index


def _registration(deco: ast.expr) -> tuple[str, list[str]] | None:
    """("register", [name]) / ("register_pattern", [regex, shown]) for a decorator on a registry
    constant (an upper-case name: ``LLMS``, ``FORMATS`` ...)."""
    if not (isinstance(deco, ast.Call) and isinstance(deco.func, ast.Attribute)
            and isinstance(deco.func.value, ast.Name) and deco.func.value.id.isupper()
            and deco.func.attr in ("register", "register_pattern")):
        return None
    args = [a.value for a in deco.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
    if len(args) != len(deco.args) or len(args) != (1 if deco.func.attr == "register" else 2):
        raise ValueError(f"cannot read registration {ast.unparse(deco)} without importing it")
    return deco.func.attr, args
