"""``gemfactory`` command line. Heavy imports happen inside each command, not at start-up."""
from __future__ import annotations

import argparse
import logging
import os
import sys

from ..errors import GemError
from . import cache, components, data, download, evaluate, export, importer, serve, training
from .components import imported_rows, source_rows  # noqa: F401  (re-exported for tests and tools)

# one module per command group; each adds its subcommands to the parser
COMMAND_GROUPS = (components, training, serve, evaluate, export, importer, data, download, cache)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # argparse cannot place an optional positional after options (chat CKPT --ecg R "question")
    if extra and getattr(args, "command", None) == "chat" and args.question is None \
            and not any(e.startswith("-") for e in extra):
        args.question = " ".join(extra)
    elif extra and isinstance(getattr(args, "overrides", None), list) \
            and all("=" in e and not e.startswith("-") for e in extra):
        args.overrides = [*args.overrides, *extra]  # dotted overrides written after the options
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    logging.basicConfig(level=logging.INFO if not args.quiet else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if args.command != "download":  # only `download` reaches the hub unless HF_HUB_OFFLINE=0 is set
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        return args.func(args) or 0
    except GemError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gemfactory", description=__doc__.splitlines()[0])
    p.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in COMMAND_GROUPS:
        group.register(sub)
    return p
