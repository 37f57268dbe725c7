"""Helpers the command modules share."""
from __future__ import annotations

import argparse

KINDS = ("llms", "vision_towers", "ecg_encoders", "connectors", "templates", "eval_tasks", "tune_types")
# short names a user types: `gemfactory list vision 'clip*'`
KIND_ALIASES = {"llm": "llms", "vision": "vision_towers", "vision_tower": "vision_towers", "ecg": "ecg_encoders",
                "ecg_encoder": "ecg_encoders", "connector": "connectors", "template": "templates",
                "eval": "eval_tasks", "eval_task": "eval_tasks", "task": "eval_tasks", "tasks": "eval_tasks",
                "tune": "tune_types", "tune_type": "tune_types"}


def kind_named(text: str) -> str | None:
    """The registry kind ``text`` names (a kind or one of its short names), else None."""
    return text if text in KINDS else KIND_ALIASES.get(text)


def add_recipe_args(s: argparse.ArgumentParser, example: str = "training.seed=1") -> None:
    """RECIPE and its dotted overrides (given before the options)."""
    s.add_argument("recipe")
    s.add_argument("overrides", nargs="*", help=f"dotted overrides, e.g. {example}")


def add_load_flags(s: argparse.ArgumentParser) -> None:
    """How to load the checkpoint (passed to ``load_pretrained_model``, which validates them)."""
    s.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N, mps or auto")
    s.add_argument("--dtype", default="float32", help="float32, bfloat16 or float16")
    s.add_argument("--load-4bit", action="store_true", help="quantise the language model to 4 bits (CUDA)")
    s.add_argument("--load-8bit", action="store_true", help="quantise the language model to 8 bits (CUDA)")


def add_context_flags(s: argparse.ArgumentParser) -> None:
    """LLaVA-Graph text context, rendered into the first question as training renders ``context``."""
    s.add_argument("--caption", help="figure caption shown to the model (a 'Caption: ...' line)")
    s.add_argument("--ocr", help="text read off the figure, shown to the model (an 'OCR: ...' line)")
    s.add_argument("--context", metavar="FILE", help='JSON file {"caption": ..., "ocr": ...} (either key optional)')


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
