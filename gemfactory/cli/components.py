"""``gemfactory`` commands: list components and check plugins."""
from __future__ import annotations

import sys

from ..errors import ConfigError
from .common import KINDS, kind_named


def register(sub) -> None:
    s = sub.add_parser("list", help="registered components by kind, optionally filtered by a wildcard")
    s.add_argument("selection", nargs="*", metavar="[KIND] [PATTERN]",
                   help=f"a kind ({', '.join(KINDS)}, or llm, vision, ecg, connector, template, eval) and/or a "
                        "shell-style wildcard over names, e.g. list vision 'clip*'")
    s.add_argument("--plugins", action="store_true",
                   help="only what installed plugins add (distribution and version) and plugin load errors")
    s.set_defaults(func=cmd_list)

    s = sub.add_parser("plugin", help="plugin tools")
    psub = s.add_subparsers(dest="plugin_command", required=True, metavar="TOOL")
    c = psub.add_parser("check", help="run the conformance kit on a component: tiny build, interface, gradients, "
                                      "save/load, determinism, one training step")
    c.add_argument("name", help="component name (distribution:name for a plugin that shares a built-in's name)")
    c.add_argument("--kind", choices=KINDS, help="the component's kind (default: the one kind that has NAME)")
    c.set_defaults(func=cmd_plugin_check)


def list_selection(words: list[str]) -> tuple[list[str], str]:
    """(kinds, wildcard) from ``list``'s words: [KIND] [PATTERN], or PATTERN alone over every kind."""
    kind = kind_named(words[0]) if words else None
    rest = words[1:] if kind else words
    if len(rest) > 1:
        raise ConfigError(f"list: expected [KIND] [PATTERN], got {' '.join(words)!r}; kinds: {', '.join(KINDS)}")
    return ([kind] if kind else list(KINDS)), (rest[0] if rest else "*")


def cmd_list(args) -> int:
    from ..registry import REGISTRIES, matching

    kinds, pattern = list_selection(args.selection)
    shown = 0
    for kind in kinds:
        reg = REGISTRIES[kind]
        if args.plugins:
            rows, errors = imported_rows(reg, plugins_only=True), reg.plugin_errors()
        else:
            rows, errors = source_rows(reg)
        if pattern != "*":
            keep = set(matching([r[0] for r in rows] + list(errors), pattern))
            rows, errors = [r for r in rows if r[0] in keep], {k: v for k, v in errors.items() if k in keep}
        if (args.plugins or pattern != "*") and not rows and not errors:
            continue
        print(f"{kind}:")
        for name, origin, summary in rows:
            print(f"  {name:<20} {origin:<32} {summary}")
        for name, msg in errors.items():
            print(f"  {name:<20} BROKEN: {msg}")
        shown += 1
    if args.plugins and not shown:
        groups = ", ".join(REGISTRIES[k].group for k in kinds)
        print(f"no plugin components installed (entry-point groups {groups})")
    elif not shown:
        raise ConfigError(f"list: no {' or '.join(kinds) if len(kinds) == 1 else 'component'} name matches "
                          f"{pattern!r}; see gemfactory list")
    return 0


def source_rows(reg) -> tuple[list[tuple[str, str, str]], dict[str, str]]:
    """(shown name, origin, summary) of every component, read from source without importing, and
    plugin load errors (a plugin entry point that cannot be read so is imported, and then the
    whole kind is, so its errors are known)."""
    from ..registry_source import builtin_listing, plugin_listing

    exact, patterns = builtin_listing(reg)
    plugins, unread = plugin_listing(reg)
    if unread:
        return imported_rows(reg), reg.plugin_errors()
    clashes = {e.name for e in exact}
    return ([(e.name, "built-in", e.summary) for e in exact + patterns]
            + [(f"{e.origin}:{e.name}" if e.name in clashes else e.name, f"{e.origin} {e.version}".strip(), e.summary)
               for e in plugins]), {}


def imported_rows(reg, plugins_only: bool = False) -> list[tuple[str, str, str]]:
    from ..registry import BUILTIN

    names = set(reg.names())
    rows = []
    for e in reg.entries():  # a plugin sharing a built-in's name is listed by its full name
        if plugins_only and e.origin == BUILTIN:
            continue
        name = f"{e.origin}:{e.name}" if f"{e.origin}:{e.name}" in names else e.name
        rows.append((name, _origin(e), _summary(e.obj)))
    return rows


def _origin(entry) -> str:
    return "built-in" if entry.origin == "gemfactory" else f"{entry.origin} {entry.version}".strip()


def _summary(obj) -> str:
    """First line of the component's own docstring (not one dataclass made up), else its module's."""
    from ..registry_source import first_line

    doc = getattr(obj, "__doc__", None) or ""
    if isinstance(obj, type) and "__dataclass_fields__" in vars(obj) and doc.startswith(f"{obj.__name__}("):
        doc = ""
    if not doc.strip():
        doc = getattr(sys.modules.get(getattr(obj, "__module__", ""), None), "__doc__", None) or ""
    return first_line(doc)


def cmd_plugin_check(args) -> int:
    from ..registry import REGISTRIES
    from ..testing import ConformanceError, check_component, find_kind

    kind = args.kind or find_kind(args.name)
    print(f"{kind} {args.name!r} ({_origin(REGISTRIES[kind].entry(args.name))}):")
    findings = check_component(kind, args.name)
    for finding in findings:
        print(f"  {finding}")
    failed = [f for f in findings if not f.ok]
    if failed:
        raise ConformanceError(f"{kind} {args.name!r}: {len(failed)} of {len(findings)} checks failed; first: "
                               f"{failed[0].check}: {failed[0].detail}")
    print("ok")
    return 0
