"""PTB-XL's ``ptbxl_database.csv`` (+ ``scp_statements.csv``) -> one super-class question and one
report question per record (``gemfactory data convert --from ptbxl``); ``split`` sends ``strat_fold``
10 to the test items."""
from __future__ import annotations

import ast
import csv
from pathlib import Path

from ..errors import DataError
from ..template.base import ECG_TOKEN
from .convert_items import BadItem, Conversion, check_record, record_path

#: PTB-XL diagnostic super-classes, in the order answers list them.
PTBXL_SUPERCLASSES = ("NORM", "MI", "STTC", "CD", "HYP")
PTBXL_COLUMNS = ("ecg_id", "filename_lr", "filename_hr", "scp_codes", "report", "strat_fold")
PTBXL_CLASS_QUESTION = (f"{ECG_TOKEN}\nWhich PTB-XL diagnostic super-classes "
                        f"({', '.join(PTBXL_SUPERCLASSES)}) does this ECG show?")
PTBXL_REPORT_QUESTION = f"{ECG_TOKEN}\nWrite the clinical report for this ECG."


def _ptbxl_files(src) -> tuple[Path, Path]:
    src = Path(src)
    database = src / "ptbxl_database.csv" if src.is_dir() else src
    statements = database.with_name("scp_statements.csv")
    for p, what in ((database, "PTB-XL database table"), (statements, "PTB-XL SCP statement table")):
        if not p.is_file():
            raise DataError(f"{what} not found: {p}")
    return database, statements


def _read_csv(path: Path) -> list[dict]:
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            return list(csv.DictReader(fh))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path}: not a readable CSV file ({exc})") from None


def ptbxl_superclass_map(statements: Path) -> dict[str, str]:
    """SCP code -> diagnostic super-class, for the codes marked diagnostic."""
    rows = _read_csv(statements)
    if not rows:
        raise DataError(f"{statements}: no rows")
    fields = list(rows[0])
    missing = [c for c in ("diagnostic", "diagnostic_class") if c not in fields]
    if missing:
        raise DataError(f"{statements}: missing columns {missing}; the first column holds the SCP code")
    code_col = fields[0]
    out = {}
    for row in rows:
        try:
            diagnostic = float(row["diagnostic"] or 0) == 1.0
        except ValueError:
            diagnostic = False
        cls = (row["diagnostic_class"] or "").strip()
        if diagnostic and cls in PTBXL_SUPERCLASSES:
            out[(row[code_col] or "").strip()] = cls
    return out


def _ptbxl_int(item_id: str, row: dict, key: str) -> int:
    value = (row.get(key) or "").strip()
    try:
        number = float(value)
    except ValueError:
        raise BadItem(item_id, f"{key} must be a number, got {value!r}") from None
    if not number.is_integer():
        raise BadItem(item_id, f"{key} must be a whole number, got {value!r}")
    return int(number)


def _ptbxl_record(row: dict, n: int, superclass: dict[str, str], rate: int, ecg_folder) -> list[dict]:
    raw_id = (row.get("ecg_id") or "").strip()
    item_id = f"ptbxl-{raw_id}" if raw_id else f"row {n}"
    ecg_id = _ptbxl_int(item_id, row, "ecg_id")
    item_id = f"ptbxl-{ecg_id:05d}"
    fold = _ptbxl_int(item_id, row, "strat_fold")
    if not 1 <= fold <= 10:
        raise BadItem(item_id, f"strat_fold must be 1..10, got {fold}")
    column = "filename_hr" if rate == 500 else "filename_lr"
    ecg = record_path(row.get(column) or "")
    if not ecg:
        raise BadItem(item_id, f"{column} is empty")
    text = (row.get("scp_codes") or "").strip()
    try:
        codes = ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        raise BadItem(item_id, f"scp_codes is not a dict literal: {text[:60]!r}") from None
    if not isinstance(codes, dict) or not all(
            isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool)
            for k, v in codes.items()):
        raise BadItem(item_id, f"scp_codes must map SCP codes to likelihoods, got {text[:60]!r}")
    check_record(item_id, ecg, ecg_folder)
    found = {superclass[c] for c in codes if c in superclass}
    classes = [c for c in PTBXL_SUPERCLASSES if c in found]
    report = (row.get("report") or "").strip()
    items = []
    if classes:
        items.append({"id": f"{item_id}-superclass", "ecg": ecg, "conversations": [
            {"from": "human", "value": PTBXL_CLASS_QUESTION},
            {"from": "gpt", "value": ", ".join(classes)}]})
    if report:
        items.append({"id": f"{item_id}-report", "ecg": ecg, "conversations": [
            {"from": "human", "value": PTBXL_REPORT_QUESTION},
            {"from": "gpt", "value": report}]})
    if not items:
        raise BadItem(item_id, "no diagnostic super-class and no report: nothing to ask")
    for item in items:
        item["strat_fold"] = fold
    return items


def convert_ptbxl(src, *, rate: int = 500, split: bool = False, ecg_folder=None) -> Conversion:
    if rate not in (100, 500):
        raise DataError(f"ptbxl: rate must be 100 or 500 Hz, got {rate}")
    database, statements = _ptbxl_files(src)
    superclass = ptbxl_superclass_map(statements)
    rows = _read_csv(database)
    if not rows:
        raise DataError(f"{database}: no rows")
    missing = [c for c in PTBXL_COLUMNS if c not in rows[0]]
    if missing:
        raise DataError(f"{database}: missing columns {missing}; expected {list(PTBXL_COLUMNS)}")
    conv = Conversion("ptbxl", total=len(rows), test_items=[] if split else None)
    seen: set[int] = set()
    for n, row in enumerate(rows, start=2):  # line 1 is the header
        try:
            items = _ptbxl_record(row, n, superclass, rate, ecg_folder)
            base = items[0]["id"].rsplit("-", 1)[0]
            if base in seen:
                raise BadItem(base, "duplicate ecg_id")
            seen.add(base)
        except BadItem as bad:
            conv.bad.append(bad)
            continue
        target = conv.test_items if split and items[0]["strat_fold"] == 10 else conv.items
        target.extend(items)
    return conv
