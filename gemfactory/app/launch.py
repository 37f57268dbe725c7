"""Load the checkpoint, build the page and serve it (127.0.0.1 unless ``--host`` says otherwise)."""
from __future__ import annotations

import tempfile
from pathlib import Path

from ..errors import GemError
from ..infer.load import load_pretrained_model
from .uploads import MB


def run_app(args) -> int:
    if not args.max_upload_mb > 0:
        raise GemError(f"--max-upload-mb {args.max_upload_mb:g}: expected a size in MB above 0")
    examples = examples_folder(args.checkpoint, args.examples)
    loaded = load_pretrained_model(args.checkpoint, device=args.device, dtype=args.dtype,
                                   load_4bit=args.load_4bit, load_8bit=args.load_8bit)
    from .ui import build_app

    with tempfile.TemporaryDirectory(prefix="gemfactory-app-") as workdir:
        max_bytes = int(args.max_upload_mb * MB)
        app = build_app(loaded, examples, max_bytes, Path(workdir))
        serve(app, args.host, args.port, max_bytes, share=args.share == "yes")
    return 0


def examples_folder(checkpoint, given) -> Path | None:
    """``--examples DIR`` (which must hold records), else the run's ``examples`` folder when it holds records."""
    if given is None:  # a run folder's examples (gemfactory train copies held-out records there)
        folder = Path(checkpoint)
        if folder.name == "model" and (folder / "config.json").is_file():  # RUN/STAGE/model
            folder = folder.parents[1]
        default = folder / "examples"
        return default if default.is_dir() and any(default.glob("*.hea")) else None
    folder = Path(given)
    if not folder.is_dir():
        raise GemError(f"--examples {given}: folder not found; expected a folder of WFDB records (NAME.hea ...)")
    if not any(folder.glob("*.hea")):
        raise GemError(f"--examples {given}: no .hea header in it; expected a folder of WFDB records")
    return folder


def serve(app, host: str, port: int | None, max_upload_bytes: int, share: bool = False,
          block: bool = True) -> str:
    """Start serving ``app``; return its local URL. ``block=False`` returns at once (tests)."""
    try:
        app.launch(server_name=host, server_port=port, share=share, max_file_size=max_upload_bytes,
                   prevent_thread_lock=not block, quiet=not block)
    except OSError as exc:
        raise GemError(f"cannot serve on {host}:{port or 'a free port from 7860'} ({exc}); "
                       f"expected a free port: choose one with --port") from None
    return app.local_url
