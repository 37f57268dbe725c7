"""Write the example files that docs/data.md shows, into docs/examples/.

* ``ecg_sheet_JS00001.png``: the real record JS00001 (shared data folder) rendered as a 12-lead sheet;
* ``llava_graph_prompt.txt``: a LLaVA-Graph-style item (figure + caption + OCR context) rendered
  with the ``vicuna_v1`` template, supervised tokens marked ⟦like this⟧;
* ``vip_prompt.png``: a rectangle and an arrow (ViP-LLaVA visual prompts) drawn on that sheet,
  written only when ``gemfactory.data.visual_prompt.draw_prompts`` exists.

The shared data folder comes from ``--shared``, else ``$GEMFACTORY_SHARED_DATA``, else
``../shared/data`` next to the repository. Run from anywhere::

    python scripts/make_docs_examples.py [--shared DIR] [--out docs/examples] [--dpi 100]

The outputs are deterministic: running it twice gives the same bytes.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from gemfactory.data.context import apply_context  # noqa: E402
from gemfactory.data.ecg_io import read_ecg  # noqa: E402
from gemfactory.ecg.render import PAGE_MM, page_size_px, save_ecg_image  # noqa: E402
from gemfactory.ecg.spec import SignalSpec  # noqa: E402
from gemfactory.errors import GemError  # noqa: E402

MAX_DPI = 100
# A made-up LLaVA-Graph-style item: the figure, its caption and OCR text are context; the
# paragraph that discusses the figure is the answer the model learns.
GRAPH_ITEM = {
    "id": "example-graph-0",
    "image": "figures/accuracy_vs_records.png",
    "context": {
        "caption": "Validation accuracy against the number of training records.",
        "ocr": "accuracy 0.6 0.7 0.8 | training records 1k 10k 100k",
    },
    "conversations": [
        {"from": "human", "value": "<image>\nExplain what this figure shows."},
        {"from": "gpt", "value": "Accuracy climbs steeply up to about ten thousand records and then "
                                 "levels off, so more data helps less beyond that point."},
    ],
}


def shared_folder(arg: str | None) -> Path:
    path = Path(arg or os.environ.get("GEMFACTORY_SHARED_DATA") or REPO.parent / "shared" / "data")
    if not (path / "JS00001.hea").is_file():
        raise SystemExit(f"error: shared data folder without JS00001.hea: {path} "
                         f"(pass --shared or set GEMFACTORY_SHARED_DATA)")
    return path


def tiny_tokenizer(texts: list[str]):
    from gemfactory.llm.tokenizer import train_bpe_tokenizer

    tok = train_bpe_tokenizer(texts * 3, 400, ["<unk>", "<s>", "</s>", "<pad>"])
    tok.add_special_tokens({"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>"})
    return tok


def graph_prompt_text() -> str:
    from gemfactory.registry import TEMPLATES
    from gemfactory.template.base import normalize_conversation
    from gemfactory.template.check import CLOSE, OPEN, marked

    template = TEMPLATES.get("vicuna_v1")()
    turns = normalize_conversation(GRAPH_ITEM["conversations"], GRAPH_ITEM["id"])
    turns = apply_context(turns, GRAPH_ITEM["context"], GRAPH_ITEM["id"])
    texts = [t.text for t in turns] + [template.system, "USER: ASSISTANT:"]
    tok = tiny_tokenizer(texts)
    enc = template.encode(turns, tok)
    return (
        f"# LLaVA-Graph item (docs/data.md, 'Context fields'), rendered with the vicuna_v1 template.\n"
        f"# Supervised tokens are between {OPEN} and {CLOSE}; the caption and OCR lines are prompt.\n"
        f"# Made with scripts/make_docs_examples.py (tiny BPE tokenizer; with a real tokenizer the text\n"
        f"# is the same and supervision covers the same characters: the reply and the end marker).\n\n"
        f"## item\n{json.dumps(GRAPH_ITEM, indent=1, ensure_ascii=False)}\n\n"
        f"## rendered prompt\n{marked(tok, enc.input_ids, enc.labels)}\n"
    )


def vip_prompts(size) -> list[dict]:
    """A rectangle around the lead II panel (first column, second row) and an arrow pointing at it."""
    w, h = size
    sx, sy = w / PAGE_MM[0], h / PAGE_MM[1]

    def px(x_mm, y_mm):  # page mm (y up from the bottom edge) -> pixel (x, y down)
        return round(x_mm * sx), round(h - y_mm * sy)

    # render.py layout: traces start at x = 15 mm, row 2 has its baseline at y = 130 mm, a column is 62.5 mm
    x1, y1 = px(15.0, 148.0)
    x2, y2 = px(77.5, 115.0)
    tip = px(79.5, 131.5)
    tail = px(105.0, 150.0)
    return [{"type": "bbox", "bbox": [x1, y1, x2, y2], "color": "blue", "width": 3},
            {"type": "arrow", "start": list(tail), "end": list(tip), "color": "orange", "width": 3}]


def write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", help="shared data folder (JS00001.hea/.mat)")
    ap.add_argument("--out", default=str(REPO / "docs" / "examples"))
    ap.add_argument("--dpi", type=float, default=MAX_DPI, help=f"sheet resolution (at most {MAX_DPI})")
    args = ap.parse_args(argv)
    if not 10 <= args.dpi <= MAX_DPI:
        raise SystemExit(f"error: --dpi must be between 10 and {MAX_DPI}, got {args.dpi:g}")
    shared = shared_folder(args.shared)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    try:
        signal = read_ecg(shared / "JS00001", SignalSpec(fs=500, n_samples=5000))
        sheet = save_ecg_image(out / "ecg_sheet_JS00001.png", signal, 500, dpi=args.dpi)
    except GemError as exc:
        raise SystemExit(f"error: {exc}") from None
    written = [sheet]

    prompt = out / "llava_graph_prompt.txt"
    write_bytes(prompt, graph_prompt_text().encode("utf-8"))
    written.append(prompt)

    try:
        vp = importlib.import_module("gemfactory.data.visual_prompt")
    except ImportError:
        vp = None
    if vp is not None and hasattr(vp, "draw_prompts"):
        import io

        from PIL import Image

        with Image.open(sheet) as img:
            assert img.size == page_size_px(args.dpi)
            drawn = vp.draw_prompts(img.convert("RGB"), vip_prompts(img.size))
        buf = io.BytesIO()
        drawn.save(buf, format="PNG", compress_level=9)
        write_bytes(out / "vip_prompt.png", buf.getvalue())
        written.append(out / "vip_prompt.png")
    else:
        print("gemfactory.data.visual_prompt.draw_prompts not found: vip_prompt.png not written")

    for path in written:
        print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
