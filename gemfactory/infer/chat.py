"""``gemfactory chat``: one-shot or interactive, streaming to the terminal.

``--bbox``, ``--arrow`` and ``--point`` draw ViP-LLaVA visual prompts on ``--image`` before the model
sees it, so that a question can refer to "the red rectangle". ``--caption``, ``--ocr`` and
``--context FILE`` give LLaVA-Graph text context, written into the first question exactly as
training writes an item's ``context`` (:func:`gemfactory.data.context.apply_context`).
"""
from __future__ import annotations

import math
import sys
from typing import Iterator

from ..data.context import apply_context, context_from_flags
from ..data.visual_prompt import PALETTE, parse_color, validate_prompt
from ..errors import DataError, GemError
from ..template.base import Turn
from .generate import GenerationSettings, Prompt, stream
from .load import load_pretrained_model

HELP = "commands: /reset (new conversation), /ecg PATH, /image PATH, /quit"

# command-line flag -> (number of coordinates, their format)
PROMPT_FLAGS = {"bbox": (4, "x1,y1,x2,y2"), "arrow": (4, "x1,y1,x2,y2"), "point": (2, "x,y")}


def parse_coords(flag: str, text: str, count: int, fmt: str) -> list:
    """``"10,20,30,40"`` -> numbers; anything else is a one-line GemError naming the flag."""
    try:
        values = [float(part) for part in str(text).split(",")]
    except ValueError:
        values = []
    if len(values) != count or not all(math.isfinite(v) for v in values):
        raise GemError(f"--{flag} {text!r}: expected {fmt} ({count} comma-separated pixel coordinates)")
    return [int(v) if v.is_integer() else v for v in values]


def visual_prompt(kind: str, coords: list, color: str = "red", width: int | None = None) -> dict:
    """The prompt dict of a bbox or arrow (``coords`` x1,y1,x2,y2) or a point (x,y); not yet validated."""
    if kind == "arrow":
        prompt = {"type": "arrow", "start": coords[:2], "end": coords[2:]}
    else:
        prompt = {"type": kind, kind: coords}
    prompt["color"] = color
    if width is not None:
        prompt["width"] = width
    return prompt


def prompts_from_args(args) -> list[tuple[str, dict]]:
    """(flag as typed, visual prompt) for every --bbox, --arrow and --point, in that order."""
    color = getattr(args, "prompt_color", None) or "red"
    width = getattr(args, "prompt_width", None)
    out = []
    for flag, (count, fmt) in PROMPT_FLAGS.items():
        for text in getattr(args, flag, None) or []:
            prompt = visual_prompt(flag, parse_coords(flag, text, count, fmt), color, width)
            out.append((f"--{flag} {text}", prompt))
    if out:
        try:
            parse_color(color)
        except DataError:
            raise GemError(f"--prompt-color {color!r}: expected #rrggbb or one of {', '.join(PALETTE)}") from None
        if width is not None and width < 1:
            raise GemError(f"--prompt-width {width}: expected a line width of at least 1 pixel")
        if not getattr(args, "image", None):
            raise GemError(f"{out[0][0].split()[0]} draws on an image: give --image too")
    return out


def run_chat(args) -> int:
    flagged = prompts_from_args(args)  # bad flags fail before the model loads
    context = context_from_flags(getattr(args, "caption", None), getattr(args, "ocr", None),
                                 getattr(args, "context", None))
    loaded = load_pretrained_model(args.checkpoint, device=args.device, dtype=args.dtype,
                                   load_4bit=args.load_4bit, load_8bit=args.load_8bit)
    if flagged:
        size = loaded.processor.open_image(args.image).size
        for where, prompt in flagged:
            validate_prompt(prompt, size, where)
    settings = GenerationSettings(args.max_new_tokens, args.temperature, args.top_p)
    session = ChatSession(loaded, settings, ecg=args.ecg, image=args.image,
                          visual_prompts=[prompt for _, prompt in flagged], context=context)
    if args.question:
        session.ask(args.question, out=sys.stdout)
        return 0
    print(f"gemfactory chat ({loaded.path}); {HELP}")
    while True:
        try:
            line = input("USER> ").strip()
        except EOFError:
            return 0
        if not line:
            continue
        if line.startswith("/"):
            if session.command(line):
                return 0
            continue
        try:
            session.ask(line, out=sys.stdout)
        except GemError as exc:  # keep the session alive on a bad input
            print(f"error: {exc}")


class ChatSession:
    def __init__(self, loaded, settings, ecg=None, image=None, visual_prompts=None, context=None):
        self.loaded, self.settings = loaded, settings
        self.ecg, self.image = ecg, image
        self.context = context  # {"caption", "ocr"}: written into the first question, as in training
        self.visual_prompts: list[dict] = list(visual_prompts or [])  # drawn on the image
        if self.visual_prompts and image is None:
            raise GemError("visual prompts are drawn on an image, but the chat has none (--image)")
        self.turns: list[Turn] = []

    def model_image(self):
        """What the model is shown: the image as given, or with the visual prompts drawn on it."""
        if self.image is None or not self.visual_prompts:
            return self.image
        return self.loaded.processor.prompted_image(self.image, self.visual_prompts)

    def ask(self, question: str, out=None) -> str:
        for piece in self.ask_streaming(question):
            if out is not None:
                out.write(piece)
                out.flush()
        if out is not None:
            out.write("\n")
        return self.turns[-1].text

    def ask_streaming(self, question: str) -> Iterator[str]:
        """Yield the answer in pieces; the exchange joins the conversation once the answer is complete."""
        if not self.turns:  # attach the inputs to the first question
            prefix = ("<ecg>\n" if self.ecg is not None else "") + ("<image>\n" if self.image is not None else "")
            question = prefix + question
        turns = self.turns + [Turn("user", question)]
        if not self.turns:
            turns = apply_context(turns, self.context, "chat")
        pieces = []
        prompt = Prompt(turns, image=self.model_image(), ecg=self.ecg)
        for piece in stream(self.loaded, prompt, self.settings):
            pieces.append(piece)
            yield piece
        self.turns = turns + [Turn("assistant", "".join(pieces).strip())]

    def command(self, line: str) -> bool:
        """Handle a /command; True means quit."""
        cmd, _, arg = line.partition(" ")
        if cmd in ("/quit", "/exit"):
            return True
        if cmd == "/reset":
            self.turns = []
            print("conversation cleared")
        elif cmd in ("/ecg", "/image") and arg:
            setattr(self, cmd[1:], arg.strip())
            self.turns = []
            print(f"{cmd[1:]} set to {arg.strip()}; conversation cleared")
            if cmd == "/image" and self.visual_prompts:  # their coordinates belonged to the old image
                self.visual_prompts = []
                print("visual prompts cleared")
        else:
            print(HELP)
        return False
