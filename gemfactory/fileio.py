"""Atomic file writes: a temporary file next to the target, then one rename."""
from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w"):
    """Open a temporary file next to ``path`` (``mode`` "w" text or "wb"); on success it replaces
    ``path`` in one rename, on any error it is removed and ``path`` is left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    kwargs = {"encoding": "utf-8"} if "b" not in mode else {}
    try:
        with open(tmp, mode.replace("w", "x"), **kwargs) as fh:  # "x": honours the umask, never clobbers
            yield fh
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_text_atomic(path: str | Path, text: str) -> Path:
    with atomic_open(path) as fh:
        fh.write(text)
    return Path(path)


def read_utf8(path: Path, error: type, missing: str) -> str:
    """The text of ``path``; a missing file or bytes that are not UTF-8 raise ``error`` in one line
    (``missing``: the message for a missing file)."""
    if not path.is_file():
        raise error(missing)
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"{path}: not UTF-8 text (byte {exc.start})") from None
