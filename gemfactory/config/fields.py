"""How a recipe field is declared: its type, default and help text side by side."""
from __future__ import annotations

from dataclasses import MISSING, field, fields


def help_field(text: str, default=MISSING, default_factory=MISSING, **metadata):
    """A dataclass field whose help text (``metadata['help']``) sits next to its default."""
    kw = {"default": default} if default is not MISSING else {}
    if default_factory is not MISSING:
        kw["default_factory"] = default_factory
    return field(metadata={"help": text, **metadata}, **kw)


def field_help(section) -> dict[str, str]:
    """Field name -> help text of a recipe section (class or instance)."""
    return {f.name: f.metadata.get("help", "") for f in fields(section) if not f.metadata.get("internal")}
