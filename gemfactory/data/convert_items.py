"""What every converter of ``gemfactory data convert`` shares: the result of a conversion, malformed-item
reports, the canonical file text, and checks of record/image references."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from .dataset import read_json_list

_RECORD_SUFFIXES = (".hea", ".dat", ".mat")
_MAX_IDS_SHOWN = 20


class BadItem(Exception):
    """One malformed item (internal: collected, then skipped or raised as one DataError)."""

    def __init__(self, item_id: str, reason: str):
        super().__init__(f"sample {item_id}: {reason}")
        self.item_id = item_id
        self.reason = reason


@dataclass
class Conversion:
    """What a conversion produced: items (and test items with ``--split``) plus malformed ones."""

    source: str
    total: int = 0  # input entries (items, or CSV rows for ptbxl)
    items: list[dict] = field(default_factory=list)
    test_items: list[dict] | None = None
    bad: list[BadItem] = field(default_factory=list)

    def bad_line(self) -> str:
        ids = [b.item_id for b in self.bad]
        shown = ", ".join(ids[:_MAX_IDS_SHOWN]) + (f", ... ({len(ids) - _MAX_IDS_SHOWN} more)"
                                                   if len(ids) > _MAX_IDS_SHOWN else "")
        return one_line(f"{len(self.bad)} of {self.total} {self._unit()} malformed: {shown}; "
                         f"first: {self.bad[0]}")

    def _unit(self) -> str:
        return "rows" if self.source == "ptbxl" else "items"


def one_line(text: str) -> str:
    return re.sub(r"\s*\n\s*", " ", text)


def read_json_items(path: str | Path) -> list:
    """A JSON list, or JSON lines (``.jsonl``); file-level problems raise :class:`DataError`."""
    return read_json_list(path, kind="input", noun="items")


def dumps_items(items: list[dict], jsonl: bool = False) -> str:
    """The canonical file text (stable: same items, same bytes); ``jsonl``: one item per line."""
    if jsonl:
        return "".join(json.dumps(item, ensure_ascii=False) + "\n" for item in items)
    return json.dumps(items, indent=1, ensure_ascii=False) + "\n"


def split_path(out: str | Path) -> Path:
    """``data.json`` -> ``data_test.json`` (where ``--split`` writes the held-out fold)."""
    out = Path(out)
    return out.with_name(f"{out.stem}_test{out.suffix or '.json'}")


def record_path(value: str) -> str:
    """A WFDB record path without the ``.hea``/``.dat``/``.mat`` suffix."""
    value = value.strip()
    for suffix in _RECORD_SUFFIXES:
        if value.endswith(suffix):
            return value[: -len(suffix)]
    return value


def check_record(item_id: str, ecg: str, ecg_folder) -> None:
    if ecg_folder is None:
        return
    header = Path(ecg_folder) / f"{ecg}.hea"
    if not header.is_file():
        raise BadItem(item_id, f"ECG record {ecg!r} not found (no header {header})")


def check_image(item_id: str, image: str, image_folder) -> None:
    if image_folder is not None and not (Path(image_folder) / image).is_file():
        raise BadItem(item_id, f"image {image!r} not found in {image_folder}")


def check_visual_prompts(item_id: str, prompts) -> None:
    """Only the shape is checked here: a list of objects that each name a ``type``."""
    if not isinstance(prompts, list):
        raise BadItem(item_id, f"visual_prompts must be a list of objects, got {type(prompts).__name__}")
    for k, vp in enumerate(prompts):
        if not isinstance(vp, dict):
            raise BadItem(item_id, f"visual_prompts[{k}] must be an object, got {type(vp).__name__}")
        if not isinstance(vp.get("type"), str) or not vp["type"].strip():
            raise BadItem(item_id, f"visual_prompts[{k}] has no 'type' (expected e.g. 'bbox', 'arrow')")
