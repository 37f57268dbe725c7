"""Helpers the command modules share."""
from __future__ import annotations

import argparse

KINDS = ("llms", "vision_towers", "ecg_encoders", "connectors", "templates", "eval_tasks")


def add_load_flags(s: argparse.ArgumentParser) -> None:
    """How to load the checkpoint (passed to ``load_pretrained_model``, which validates them)."""
    s.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N, mps or auto")
    s.add_argument("--dtype", default="float32", help="float32, bfloat16 or float16")
    s.add_argument("--load-4bit", action="store_true", help="quantise the language model to 4 bits (CUDA)")
    s.add_argument("--load-8bit", action="store_true", help="quantise the language model to 8 bits (CUDA)")


def positive(kind):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or value <= 0:
            raise argparse.ArgumentTypeError(f"expected a positive {kind.__name__}, got {text!r}")
        return value

    return parse
