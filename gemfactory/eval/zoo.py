"""Compare eval records: rows are models (LLM x tower x ECG encoder x connector x recipe), columns
are ``task/metric``; the best value of each column is bold (Markdown) or starred (CSV)."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from ..errors import DataError

ROW_KEYS = ("llm", "vision", "ecg", "connector", "recipe")
LOWER_IS_BETTER = {"hamming_loss", "unparsed"}
SKIPPED = {"n", "unparsed"}


def load_records(paths) -> list[dict]:
    records = []
    for path in paths:
        try:
            record = json.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:
            raise DataError(f"zoo: cannot read record {path}: {exc}") from None
        if not isinstance(record, dict) or "metrics" not in record or "task" not in record:
            raise DataError(f"zoo: {path} is not an eval record (no 'task' / 'metrics'); write one with "
                            f"gemfactory eval --out")
        records.append(record)
    if not records:
        raise DataError("zoo: no records given")
    return records


def row_key(record: dict) -> tuple:
    parts = (record.get("model") or {}).get("components") or {}
    return tuple(str(parts.get(k) or "-") for k in ROW_KEYS)


def collect(records: list[dict]) -> tuple[list[tuple], list[str], dict]:
    """(rows, columns, values[(row, column)]) with numeric top-level metrics only."""
    values: dict = {}
    for r in records:
        for name, v in r["metrics"].items():
            if name not in SKIPPED and isinstance(v, (int, float)) and not isinstance(v, bool):
                values[(row_key(r), f"{r['task']}/{name}")] = float(v)
    rows = sorted({k for k, _ in values} | {row_key(r) for r in records})
    columns = sorted({c for _, c in values})
    return rows, columns, values


def best(rows, column: str, values: dict) -> set[tuple]:
    have = [(values[(r, column)], r) for r in rows if (r, column) in values]
    if len(have) < 2:
        return set()
    pick = min if column.rsplit("/", 1)[-1] in LOWER_IS_BETTER else max
    top = pick(v for v, _ in have)
    return {r for v, r in have if v == top}


def table(records: list[dict], fmt: str = "md") -> str:
    rows, columns, values = collect(records)
    marks = {c: best(rows, c, values) for c in columns}

    def cell(row, column, bold, star):
        if (row, column) not in values:
            return "-"
        text = f"{values[(row, column)]:.3f}"
        return f"{bold}{text}{bold}{star}" if row in marks[column] else text

    header = [*ROW_KEYS, *columns]
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(header)
        for row in rows:
            writer.writerow([*row, *(cell(row, c, "", "*") for c in columns)])
        return buf.getvalue()
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        lines.append("| " + " | ".join([*row, *(cell(row, c, "**", "") for c in columns)]) + " |")
    return "\n".join(lines) + "\n"


def plot(records: list[dict], out: str | Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, columns, values = collect(records)
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(columns) * max(1, len(rows)) / 2), 4))
    width = 0.8 / max(1, len(rows))
    for i, row in enumerate(rows):
        ax.bar([j + i * width for j in range(len(columns))], [values.get((row, c), 0.0) for c in columns],
               width, label=" / ".join(row))
    ax.set_xticks([j + width * (len(rows) - 1) / 2 for j in range(len(columns))], columns, rotation=20, ha="right")
    ax.legend(fontsize=7)
    ax.set_ylabel("value")
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
