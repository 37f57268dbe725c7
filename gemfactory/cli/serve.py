"""``gemfactory`` commands: chat with a checkpoint and serve it as a web app."""
from __future__ import annotations

from .common import add_context_flags, add_load_flags


def register(sub) -> None:
    s = sub.add_parser("chat", help="ask a trained model (one shot, or interactive without a question)")
    s.add_argument("checkpoint")
    s.add_argument("question", nargs="?")
    s.add_argument("--ecg", help="WFDB record path without extension")
    s.add_argument("--image")
    s.add_argument("--bbox", action="append", metavar="X1,Y1,X2,Y2",
                   help="draw a rectangle on --image (ViP-LLaVA visual prompt; repeatable)")
    s.add_argument("--arrow", action="append", metavar="X1,Y1,X2,Y2",
                   help="draw an arrow from X1,Y1 to X2,Y2 on --image (repeatable)")
    s.add_argument("--point", action="append", metavar="X,Y", help="draw a filled dot on --image (repeatable)")
    s.add_argument("--prompt-color", default="red", help="colour of the drawn prompts: a name or #rrggbb")
    s.add_argument("--prompt-width", type=int, help="line width of the drawn prompts in pixels "
                   "(default: from the image size)")
    add_context_flags(s)
    s.add_argument("--max-new-tokens", type=int, default=128)
    s.add_argument("--temperature", type=float, default=0.0)
    s.add_argument("--top-p", type=float, default=1.0)
    add_load_flags(s)
    s.set_defaults(func=cmd_chat)

    s = sub.add_parser("app", help="a local web app: upload an ECG record or image and chat with the model")
    s.add_argument("checkpoint")
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (default: this machine only)")
    s.add_argument("--port", type=int, help="port to listen on (default: 7860, or the next free one)")
    s.add_argument("--max-upload-mb", type=float, default=50, help="largest upload accepted, in MB")
    s.add_argument("--examples", metavar="DIR",
                   help="folder of WFDB records offered as examples (default: CKPT/examples when present)")
    s.add_argument("--share", choices=("no", "yes"), default="no",
                   help="also publish a temporary public gradio.live link (needs internet)")
    add_load_flags(s)
    s.set_defaults(func=cmd_app)


def cmd_chat(args) -> int:
    from ..infer.chat import run_chat

    return run_chat(args)


def cmd_app(args) -> int:
    from ..app.launch import run_app

    return run_app(args)
