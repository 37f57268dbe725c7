"""Parsed YAML -> typed recipe sections: every value checked against its field's type, unknown keys
refused with the closest known one suggested; errors name the file and the key path."""
from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from typing import Literal, Union

from ..errors import ConfigError


def _type_name(tp) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(tp) if a is not type(None)) + " | null"
    if origin is list:
        return f"list of {_type_name(typing.get_args(tp)[0])}"
    if origin is dict:
        return "mapping"
    if dataclasses.is_dataclass(tp):
        return "mapping"
    return getattr(tp, "__name__", str(tp))


def build(tp, value, source: str, path: str):
    """``value`` (parsed YAML) as type ``tp``, or a ConfigError naming ``source`` and the key path."""
    where = f"{source}: {path or '<top>'}"
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return None if value is None else build(args[0], value, source, path)
    if origin is Literal:
        return _literal(tp, value, where)
    if dataclasses.is_dataclass(tp):
        return _section(tp, _mapping(value, where), source, path)
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {_show(value)}")
        (item_tp,) = typing.get_args(tp)
        return [build(item_tp, v, source, _item_path(item_tp, v, path, i)) for i, v in enumerate(value)]
    if origin is dict:
        val_tp = typing.get_args(tp)[1]
        return {str(k): build(val_tp, v, source, _join(path, str(k))) for k, v in _mapping(value, where).items()}
    if tp is dict:
        return _mapping(value, where)
    return _scalar(tp, value, where, path)


def _literal(tp, value, where: str):
    allowed = typing.get_args(tp)
    if value not in allowed:
        close = difflib.get_close_matches(str(value), [str(a) for a in allowed], n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"{where}: {value!r} is not one of {list(allowed)}{hint}")
    return value


def _mapping(value, where: str) -> dict:
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected a mapping, got {_show(value)}")
    return value


def _section(tp, value: dict, source: str, path: str):
    """A recipe section (dataclass): every key known, every value built as its field's type."""
    fields = {f.name: f for f in dataclasses.fields(tp) if not f.metadata.get("internal")}
    kwargs = {}
    for key, sub in value.items():
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"{source}: {_join(path, key)}: unknown key{hint}; expected one of: {', '.join(fields)}")
        if isinstance(sub, list) and fields[key].metadata.get("accepts_list_for"):
            sub = {fields[key].metadata["accepts_list_for"]: sub}  # a list names that one component's entries
        kwargs[key] = build(_hints(tp)[key], sub, source, _join(path, key))
    return tp(**kwargs)


def _scalar(tp, value, where: str, path: str):
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            # YAML reads 1e-4 (no dot) as a string; accept numeric strings for floats
            try:
                return float(value) if isinstance(value, str) else _bad(where, tp, value)
            except ValueError:
                _bad(where, tp, value)
        return float(value)
    if tp in (int, bool, str):
        if isinstance(value, bool) != (tp is bool) or not isinstance(value, tp):
            _bad(where, tp, value)
        return value
    raise TypeError(f"unsupported schema type {tp!r} at {path}")


def _item_path(item_tp, value, path: str, index: int) -> str:
    """Items of a list of named sections (stages) are addressed by name, as overrides address them."""
    names = {f.name: f for f in dataclasses.fields(item_tp)} if dataclasses.is_dataclass(item_tp) else {}
    if "name" in names and isinstance(value, dict):
        name = value.get("name", names["name"].default)
        if isinstance(name, str) and name:
            return f"{path}.{name}"
    return f"{path}[{index}]"


_HINTS: dict = {}


def _hints(tp) -> dict:
    if tp not in _HINTS:
        _HINTS[tp] = typing.get_type_hints(tp)
    return _HINTS[tp]


def _bad(where: str, tp, value):
    raise ConfigError(f"{where}: expected {_type_name(tp)}, got {_show(value)}")


def _show(value) -> str:
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{type(value).__name__} {text}"


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else str(key)
