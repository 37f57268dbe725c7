"""The Gradio Blocks page: an ECG record (uploaded or an example) drawn as a 12-lead sheet, an optional
image with a visual prompt drawn by clicking on it (or typed as coordinates), an optional caption and
OCR text (LLaVA-Graph context, rendered as training renders it), and a chat whose answers stream in.

Every user error appears as a warning toast and in the status line, in one sentence naming the file
or value and what was expected. The model is shared; each browser tab has its own conversation.
"""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import gradio as gr
import torch

from ..data.context import context_from_flags
from ..ecg.render import render_ecg
from ..data.visual_prompt import PALETTE, validate_prompt
from ..errors import GemError
from ..infer.chat import ChatSession, visual_prompt
from ..infer.generate import GenerationSettings
from .uploads import example_records, load_record

PROMPT_KINDS = ("none", "bbox", "arrow", "point")
COORD_NAMES = {"bbox": ("x1", "y1", "x2", "y2"), "arrow": ("x1", "y1", "x2", "y2"), "point": ("x1", "y1")}
SHEET_DPI = 80
GENERATING = "*Generating the answer…*"  # the status line while an answer streams in
CLICK_HELP = "Click the image to draw: one click places a point; two clicks make a box or an arrow (start, end)."


def build_app(loaded, examples_dir: Path | None, max_upload_bytes: int, workdir: Path) -> gr.Blocks:
    """The app for one loaded model; uploaded records go to temporary folders under ``workdir``."""
    handlers = Handlers(loaded, examples_dir, max_upload_bytes, workdir)
    with gr.Blocks(title="gemfactory") as app:
        ui = _layout(handlers)
        _wire(ui, handlers)
    return app


class Handlers:
    """What the page's events do, for one loaded model; uploads go to temporary folders under ``workdir``."""

    def __init__(self, loaded, examples_dir: Path | None, max_upload_bytes: int, workdir: Path):
        self.loaded, self.max_upload_bytes, self.workdir = loaded, max_upload_bytes, workdir
        self.examples = example_records(examples_dir) if examples_dir else {}
        self.has_ecg = loaded.processor.signal_spec is not None
        self.has_image = loaded.processor.image_processor is not None

    def show_record(self, files, old):
        if old is not None:
            old.discard()
        if not files:
            return None, "", None, None, []
        try:
            record = load_record(files, self.loaded.processor.signal_spec, self.max_upload_bytes, self.workdir)
        except GemError as exc:
            return None, error(exc), None, None, []
        sheet = render_ecg(record.sheet_signal, record.fs, dpi=SHEET_DPI)
        return sheet, f"Loaded {record.summary()}. Ask a question about it.", record, None, []

    def show_example(self, name, old):
        return self.show_record(self.examples.get(name), old)

    def show_prompted_image(self, image, kind, color, *coords):
        try:
            picture = self.loaded.processor.open_image(image) if image else None
        except GemError as exc:
            return None, error(exc), None, []
        if picture is not None and not drawn(kind, coords):  # the plain image, to click on
            return picture, "" if kind in (None, "none") else CLICK_HELP, None, []
        try:
            prompts = visual_prompts(kind, color, coords, picture and picture.size)
            shown = self.loaded.processor.prompted_image(picture, prompts) if picture else None
        except GemError as exc:  # the plain image stays, to draw the prompt again by clicking
            return picture, error(exc), None, []
        return shown, "", None, []

    def answer(self, question, history, session, record, image, kind, color, x1, y1, x2, y2,
               temperature, top_p, max_new_tokens, caption="", ocr=""):
        history = list(history or [])
        if not str(question or "").strip():
            yield history, question, error("the question is empty; type a question first"), session
            return
        asked = history + [{"role": "user", "content": question}, {"role": "assistant", "content": ""}]
        try:
            settings = GenerationSettings(int(max_new_tokens), float(temperature), float(top_p))
            if session is None:  # a new conversation takes the current record, image and prompt
                size = self.loaded.processor.open_image(image).size if image else None
                ecg = torch.from_numpy(record.model_signal) if record is not None and self.has_ecg else None
                session = ChatSession(self.loaded, settings, ecg=ecg, image=image,
                                      visual_prompts=visual_prompts(kind, color, (x1, y1, x2, y2), size),
                                      context=context_from_flags(caption or None, ocr or None))
            session.settings = settings
            yield asked, "", GENERATING, session
            for piece in session.ask_streaming(question):
                asked[-1]["content"] += piece
                yield asked, "", GENERATING, session
            yield asked, "", "", session
        except GemError as exc:  # bad inputs fail before the first piece: the question stays to edit
            yield history, question, error(exc), session


def _layout(h: Handlers) -> SimpleNamespace:
    """The page's components (inside the open Blocks)."""
    record_state = gr.State(None, delete_callback=discard_record)
    session_state = gr.State(None)  # this tab's ChatSession, made at its first question
    gr.Markdown(f"## gemfactory · `{h.loaded.path}`")
    status = gr.Markdown(elem_id="status")
    with gr.Row():
        with gr.Column():
            with gr.Group(visible=h.has_ecg):
                files = gr.File(label="ECG record: NAME.hea with NAME.dat or NAME.mat (or one .zip)",
                                file_count="multiple", elem_id="record-upload")
                example = gr.Dropdown(list(h.examples), value=None, label="or an example record",
                                      visible=bool(h.examples), elem_id="example")
                sheet = gr.Image(label="12-lead ECG", type="pil", format="png", interactive=False,
                                 elem_id="ecg-sheet")
            with gr.Group(visible=h.has_image):
                image = gr.Image(label="Image (optional)", type="filepath", sources=["upload"],
                                 elem_id="image-upload")
                with gr.Row():
                    kind = gr.Radio(list(PROMPT_KINDS), value="none", label="Visual prompt on the image",
                                    elem_id="prompt-kind")
                    color = gr.Dropdown(list(PALETTE), value="red", label="Colour")
                with gr.Row():
                    coords = [gr.Number(label=name, precision=0, minimum=0, min_width=80, elem_id=f"prompt-{name}")
                              for name in ("x1", "y1", "x2", "y2")]
                prompted = gr.Image(label="What the model sees (click to draw the prompt)", type="pil",
                                    interactive=False, elem_id="prompted")
                gr.Markdown(CLICK_HELP)
            with gr.Accordion("Text context (LLaVA-Graph): caption and OCR", open=False):
                caption = gr.Textbox("", label="Caption", lines=2, elem_id="caption")
                ocr = gr.Textbox("", label="OCR text", lines=2, elem_id="ocr")
        with gr.Column():
            chatbot = gr.Chatbot(label="Chat", elem_id="chat")
            question = gr.Textbox(label="Question", placeholder="What is the heart rate?", elem_id="question")
            with gr.Row():
                ask = gr.Button("Ask", variant="primary", elem_id="ask")
                new_chat = gr.Button("New conversation")
            with gr.Accordion("Generation settings", open=False):
                temperature = gr.Slider(0, 2, value=0, step=0.05, label="Temperature (0: greedy)")
                top_p = gr.Slider(0.05, 1, value=1, step=0.05, label="Top-p")
                max_new_tokens = gr.Slider(1, 1024, value=128, step=1, label="Max new tokens")
    return SimpleNamespace(
        record_state=record_state, session_state=session_state, status=status, files=files, example=example,
        sheet=sheet, image=image, kind=kind, color=color, coords=coords, prompted=prompted, caption=caption,
        ocr=ocr, chatbot=chatbot, question=question, ask=ask, new_chat=new_chat, temperature=temperature,
        top_p=top_p, max_new_tokens=max_new_tokens)


def _wire(ui: SimpleNamespace, h: Handlers) -> None:
    """What each component's events run."""
    record_outputs = [ui.sheet, ui.status, ui.record_state, ui.session_state, ui.chatbot]
    ui.files.change(h.show_record, [ui.files, ui.record_state], record_outputs, api_name="upload_record")
    ui.example.change(h.show_example, [ui.example, ui.record_state], record_outputs, api_name="pick_example")
    prompt_inputs = [ui.image, ui.kind, ui.color, *ui.coords]
    for component in prompt_inputs:  # new image or prompt: redraw it, start a new conversation
        component.change(h.show_prompted_image, prompt_inputs, [ui.prompted, ui.status, ui.session_state, ui.chatbot],
                         api_name=False)
    first_click = gr.State(None)  # the first corner of a box or arrow being drawn
    for clickable in (ui.image, ui.prompted):
        clickable.select(draw_by_click, [ui.kind, first_click, *ui.coords],
                         [ui.kind, first_click, *ui.coords, ui.status], api_name=False)
    ui.image.change(lambda: None, None, first_click, api_name=False)
    for component in (ui.caption, ui.ocr):  # new context: a new conversation
        component.change(lambda: (None, []), None, [ui.session_state, ui.chatbot], api_name=False)
    ask_inputs = [ui.question, ui.chatbot, ui.session_state, ui.record_state, *prompt_inputs,
                  ui.temperature, ui.top_p, ui.max_new_tokens, ui.caption, ui.ocr]
    ask_outputs = [ui.chatbot, ui.question, ui.status, ui.session_state]
    ui.ask.click(h.answer, ask_inputs, ask_outputs, api_name="ask")
    ui.question.submit(h.answer, ask_inputs, ask_outputs, api_name=False)
    ui.new_chat.click(lambda: (None, [], ""), None, [ui.session_state, ui.chatbot, ui.status], api_name=False)


def visual_prompts(kind: str, color: str, coords, image_size) -> list[dict]:
    """The one prompt chosen in the page (none, or a bbox/arrow/point), checked against the image."""
    if kind in (None, "none"):
        return []
    if image_size is None:
        raise GemError(f"the {kind} prompt is drawn on an image; upload an image first")
    names = COORD_NAMES[kind]
    values = list(coords)[:len(names)]
    if any(v is None for v in values):
        raise GemError(f"the {kind} prompt needs {', '.join(names)}; fill in every coordinate")
    prompt = visual_prompt(kind, [int(v) for v in values], color)
    validate_prompt(prompt, image_size, f"{kind} prompt")
    return [prompt]


def drawn(kind, coords) -> bool:
    """Whether the prompt of ``kind`` has coordinates yet (the browser sends empty fields as 0 or None)."""
    return kind not in (None, "none") and any(v not in (None, 0) for v in list(coords)[:len(COORD_NAMES[kind])])


def draw_by_click(kind, first_click, x1, y1, x2, y2, evt: gr.SelectData):
    """A click at ``evt.index`` (image pixels): a point, or one end of a box/arrow (see :func:`click_prompt`)."""
    kind, first_click, coords, message = click_prompt(kind, first_click, (x1, y1, x2, y2), evt.index)
    return kind, first_click, *coords, message


def click_prompt(kind, first_click, coords, xy) -> tuple:
    """(kind, first corner, coordinates, status) after a click at ``xy``.

    A point takes one click (``none`` becomes ``point``); a box or arrow takes two: the first is kept
    as the pending corner (the coordinates stay as they were), the second completes it (a box with
    x1 <= x2 and y1 <= y2; an arrow from the first click to the second).
    """
    x, y = (round(v) for v in xy)
    if kind in (None, "none", "point"):
        return "point", None, [x, y, *list(coords)[2:]], f"Point at ({x}, {y})."
    if first_click is None:
        what, next_one = ("corner", "opposite corner") if kind == "bbox" else ("end", "arrow head")
        return kind, [x, y], list(coords), f"First {what} at ({x}, {y}); click the {next_one}."
    (fx, fy) = first_click
    if kind == "bbox":
        box = [min(fx, x), min(fy, y), max(fx, x), max(fy, y)]
        return kind, None, box, f"Box from ({box[0]}, {box[1]}) to ({box[2]}, {box[3]})."
    return kind, None, [fx, fy, x, y], f"Arrow from ({fx}, {fy}) to ({x}, {y})."


def discard_record(record) -> None:
    """Remove a closed tab's uploaded record from disk."""
    if record is not None:
        record.discard()


def error(exc) -> str:
    """Show ``exc`` as a warning toast; return it for the status line."""
    gr.Warning(str(exc))
    return f"**Error:** {exc}"
