"""Convert ECG/vision instruction data into gemfactory's canonical LLaVA JSON (``gemfactory data convert``).

Sources (``--from``):

* ``llava``: LLaVA / GEM / ECGBench / PULSE-style JSON (or ``.jsonl``). Accepts ``conversations``
  or PULSE's ``conversation``, ``from``/``value`` or ``role``/``content`` turns, and the role names
  human/user, gpt/assistant/model, system. A placeholder missing for an input the item has is added
  in front of the first user turn (GEM's evaluation does the same for its questions).
* ``ecginstruct``: GEM / ECGInstruct training items (``ecg`` WFDB record, optional ``image``,
  ``conversations``; ``machine_measurements`` / ``report`` kept). Placeholders are *checked*, not
  added: a training item without them is reported as malformed.
* ``ptbxl``: PTB-XL's ``ptbxl_database.csv`` (+ ``scp_statements.csv``) -> one super-class
  question and one report question per record; ``--split`` sends ``strat_fold`` 10 to
  ``OUT_test.json``.

The canonical item is ``{"id", "ecg"?, "image"?, "conversations", ...}``: string ``id``; record path
without extension; ``conversations`` as ``{"from": "human"|"gpt"|"system", "value"}`` turns that
alternate, user first; exactly one ``<ecg>`` for an ECG input and one ``<image>`` for an image input,
in user turns only. GEM's convention (a lone ``<image>`` standing for the ECG followed by the image)
is written out explicitly as ``<ecg><image>``, which gives the same tokens under every layout.
Other keys (``context``, ``visual_prompts``, ``machine_measurements``, ``report``, ...) are kept,
after the canonical ones. Converting a canonical file gives the same bytes again.

Malformed items are reported by id: skipped with a one-line summary (``on_bad="skip"``) or the
whole conversion refused with one error (``on_bad="error"``). Output files are written atomically.
"""
from __future__ import annotations

from pathlib import Path

from ..errors import DataError
from ..fileio import write_text_atomic
from ..template.base import ECG_TOKEN, IMAGE_TOKEN, PLACEHOLDERS, ROLE_ALIASES
from .context import check_context
from .convert_items import (BadItem, Conversion, check_image, check_record, check_visual_prompts, dumps_items,
                            read_json_items, record_path, split_path)
from .convert_ptbxl import PTBXL_CLASS_QUESTION, convert_ptbxl  # noqa: F401  (PTBXL_CLASS_QUESTION: public)

SOURCES = ("llava", "ecginstruct", "ptbxl")
ON_BAD = ("skip", "error")
_ROLE_OUT = {"user": "human", "assistant": "gpt", "system": "system"}
_FIRST_KEYS = ("id", "ecg", "image", "conversations", "context", "visual_prompts")


# ------------------------------------------------------------------------------------------
# LLaVA / GEM / PULSE items
def _item_id(raw) -> str | None:
    """The item's id as a string; None when it is missing or unusable."""
    if isinstance(raw, dict):
        key = "id" if "id" in raw else "No"  # ECGBench's mmmu-ecg items carry their id as "No"
        value = raw.get(key)
        if isinstance(value, str) and value.strip():
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
    return None


def _turns(item_id: str, raw: dict) -> list[dict]:
    if "conversations" in raw and "conversation" in raw:
        raise BadItem(item_id, "has both 'conversations' and 'conversation'; expected one")
    key = "conversations" if "conversations" in raw else "conversation"
    convs = raw.get(key)
    if convs is None:
        raise BadItem(item_id, "missing 'conversations' (a list of human/gpt turns)")
    if not isinstance(convs, list) or not convs:
        raise BadItem(item_id, f"'{key}' must be a non-empty list of turns, got "
                               f"{type(convs).__name__ if not isinstance(convs, list) else 'an empty list'}")
    turns = []
    for k, t in enumerate(convs):
        if not isinstance(t, dict):
            raise BadItem(item_id, f"{key}[{k}] must be an object, got {type(t).__name__}")
        role = t.get("from", t.get("role"))
        text = t.get("value", t.get("content"))
        if role not in ROLE_ALIASES:
            raise BadItem(item_id, f"{key}[{k}]: role {role!r} is not one of human/gpt/user/assistant/system")
        if not isinstance(text, str):
            raise BadItem(item_id, f"{key}[{k}]: the text must be a string, got {type(text).__name__}")
        turns.append({"from": _ROLE_OUT[ROLE_ALIASES[role]], "value": text})
    roles = [t["from"] for t in turns]
    if "system" in roles[1:]:
        raise BadItem(item_id, "a system turn may only come first")
    chat = [r for r in roles if r != "system"]
    for k, role in enumerate(chat):
        expected = "human" if k % 2 == 0 else "gpt"
        if role != expected:
            raise BadItem(item_id, f"turn {k} is {role}, expected {expected} (turns alternate, human first)")
    if not any(t["from"] == "gpt" and t["value"].strip() for t in turns):
        raise BadItem(item_id, "no assistant reply (nothing to learn or score)")
    return turns


def _place(item_id: str, turns: list[dict], has_ecg: bool, has_image: bool, add: bool) -> list[dict]:
    """Make the placeholders match the inputs: GEM's lone <image> spelled out, missing ones added."""
    if any(p in t["value"] for t in turns if t["from"] == "gpt" for p in PLACEHOLDERS):
        raise BadItem(item_id, "placeholders (<image>, <ecg>) may only appear in user turns")
    prompt = "".join(t["value"] for t in turns if t["from"] != "gpt")
    n_img, n_ecg = prompt.count(IMAGE_TOKEN), prompt.count(ECG_TOKEN)
    if has_ecg and n_ecg == 0 and n_img == 1:
        # GEM: a lone <image> stands for the ECG tokens followed by the image tokens
        repl = ECG_TOKEN + (IMAGE_TOKEN if has_image else "")
        turns = [{**t, "value": t["value"].replace(IMAGE_TOKEN, repl)} for t in turns]
        n_ecg, n_img = 1, int(has_image)
    for name, count, present in ((IMAGE_TOKEN, n_img, has_image), (ECG_TOKEN, n_ecg, has_ecg)):
        if count > int(present):
            what = "one" if present else "no"
            raise BadItem(item_id, f"the text has {count} {name} placeholder(s) but the item has {what} "
                                   f"{name[1:-1]} input")
    missing = (ECG_TOKEN if has_ecg and not n_ecg else "") + (IMAGE_TOKEN if has_image and not n_img else "")
    if missing:
        if not add:
            raise BadItem(item_id, f"the first human turn lacks the {missing} placeholder for the item's "
                                   f"input (use --from llava to add missing placeholders)")
        k = next(i for i, t in enumerate(turns) if t["from"] == "human")
        turns = [*turns[:k], {"from": "human", "value": f"{missing}\n{turns[k]['value']}"}, *turns[k + 1:]]
    return turns


def canonical_item(raw, index: int, *, add_placeholders: bool = True, ecg_folder=None,
                   image_folder=None) -> dict:
    """One input item -> a canonical item, or :class:`BadItem` naming the item."""
    item_id = _item_id(raw) or f"#{index}"  # items without a usable id are named by position
    if not isinstance(raw, dict):
        raise BadItem(item_id, f"expected an object, got {type(raw).__name__}")
    if "id" not in raw and "No" not in raw:
        raise BadItem(item_id, "missing 'id'")
    if _item_id(raw) is None:
        key = "id" if "id" in raw else "No"
        raise BadItem(item_id, f"'{key}' must be a non-empty string or an integer, got {raw[key]!r}")
    paths = {}
    for key in ("ecg", "image"):
        value = raw.get(key)
        if value is None:
            continue
        if not isinstance(value, str) or not value.strip():
            raise BadItem(item_id, f"'{key}' must be a non-empty path string, got {value!r}")
        paths[key] = record_path(value) if key == "ecg" else value
    turns = _turns(item_id, raw)
    turns = _place(item_id, turns, "ecg" in paths, "image" in paths, add_placeholders)
    if "context" in raw:
        try:
            check_context(raw["context"], item_id)
        except DataError as exc:
            raise BadItem(item_id, str(exc).split(": ", 1)[1]) from None
    if "visual_prompts" in raw:
        check_visual_prompts(item_id, raw["visual_prompts"])
        if raw["visual_prompts"] and "image" not in paths:
            raise BadItem(item_id, "has visual_prompts but no image to draw them on")
    if "ecg" in paths:
        check_record(item_id, paths["ecg"], ecg_folder)
    if "image" in paths:
        check_image(item_id, paths["image"], image_folder)

    out = {"id": item_id, **paths, "conversations": turns}
    for key in ("context", "visual_prompts"):
        if key in raw:
            out[key] = raw[key]
    for key, value in raw.items():
        if key not in out and key not in ("conversation", "ecg", "image"):
            out[key] = value
    return out


def _convert_items(source: str, raw_items: list, **kw) -> Conversion:
    conv = Conversion(source, total=len(raw_items))
    seen: dict[str, int] = {}
    for index, raw in enumerate(raw_items):
        try:
            item = canonical_item(raw, index, **kw)
            if item["id"] in seen:
                raise BadItem(item["id"], f"duplicate id (also item {seen[item['id']]})")
            seen[item["id"]] = index
            conv.items.append(item)
        except BadItem as bad:
            conv.bad.append(bad)
    return conv


def convert_llava(src, *, ecg_folder=None, image_folder=None) -> Conversion:
    return _convert_items("llava", read_json_items(src), add_placeholders=True,
                          ecg_folder=ecg_folder, image_folder=image_folder)


def convert_ecginstruct(src, *, ecg_folder=None, image_folder=None) -> Conversion:
    return _convert_items("ecginstruct", read_json_items(src), add_placeholders=False,
                          ecg_folder=ecg_folder, image_folder=image_folder)


# ------------------------------------------------------------------------------------------
def convert(source: str, src, out, *, on_bad: str = "skip", ecg_folder=None, image_folder=None,
            rate: int = 500, split: bool = False) -> Conversion:
    """Convert ``src`` and write ``out`` (and ``out_test`` with ``split``); see the module docstring."""
    if source not in SOURCES:
        raise DataError(f"convert: unknown source {source!r}; expected one of {list(SOURCES)}")
    if on_bad not in ON_BAD:
        raise DataError(f"convert: on_bad must be one of {list(ON_BAD)}, got {on_bad!r}")
    for name, folder in (("ecg folder", ecg_folder), ("image folder", image_folder)):
        if folder is not None and not Path(folder).is_dir():
            raise DataError(f"{name} not found: {folder}")
    if split and source != "ptbxl":
        raise DataError("convert: --split is only for --from ptbxl (it splits by strat_fold)")
    if source == "ptbxl":
        if image_folder is not None:
            raise DataError("convert: --image-folder does not apply to --from ptbxl (no images)")
        conv = convert_ptbxl(src, rate=rate, split=split, ecg_folder=ecg_folder)
    elif source == "llava":
        conv = convert_llava(src, ecg_folder=ecg_folder, image_folder=image_folder)
    else:
        conv = convert_ecginstruct(src, ecg_folder=ecg_folder, image_folder=image_folder)
    if conv.bad and on_bad == "error":
        raise DataError(f"{src}: {conv.bad_line()}; nothing written (--on-bad skip drops them)")
    if not conv.items and not conv.test_items:
        why = f"; {conv.bad_line()}" if conv.bad else ""
        raise DataError(f"{src}: no usable {conv._unit()} to write{why}")
    jsonl = Path(out).suffix == ".jsonl"  # same layout as the loader expects from the suffix
    write_text_atomic(out, dumps_items(conv.items, jsonl))
    if conv.test_items is not None:
        write_text_atomic(split_path(out), dumps_items(conv.test_items, jsonl))
    return conv
