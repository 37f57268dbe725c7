"""``gemfactory chat``: one-shot or interactive, streaming to the terminal."""
from __future__ import annotations

import sys

from ..errors import GemError
from ..template.base import Turn
from .generate import GenerationSettings, Prompt, stream
from .load import load_pretrained_model

HELP = "commands: /reset (new conversation), /ecg PATH, /image PATH, /quit"


def run_chat(args) -> int:
    loaded = load_pretrained_model(args.checkpoint)
    settings = GenerationSettings(args.max_new_tokens, args.temperature, args.top_p)
    session = ChatSession(loaded, settings, ecg=args.ecg, image=args.image)
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
    def __init__(self, loaded, settings, ecg=None, image=None):
        self.loaded, self.settings = loaded, settings
        self.ecg, self.image = ecg, image
        self.turns: list[Turn] = []

    def ask(self, question: str, out=None) -> str:
        if not self.turns:  # attach the inputs to the first question
            prefix = ("<ecg>\n" if self.ecg else "") + ("<image>\n" if self.image else "")
            question = prefix + question
        turns = self.turns + [Turn("user", question)]
        pieces = []
        for piece in stream(self.loaded, Prompt(turns, image=self.image, ecg=self.ecg), self.settings):
            pieces.append(piece)
            if out is not None:
                out.write(piece)
                out.flush()
        if out is not None:
            out.write("\n")
        answer = "".join(pieces).strip()
        self.turns = turns + [Turn("assistant", answer)]
        return answer

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
        else:
            print(HELP)
        return False
