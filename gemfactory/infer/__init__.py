"""Inference: load a checkpoint, generate (batched or streaming), one-call question answering.

Note: the functions ``generate`` and ``eval_model`` share their names with the submodules that
define them; this package binds the names to the functions. Import the modules themselves with
``from gemfactory.infer.generate import ...`` rather than ``import gemfactory.infer.generate``.
"""
from __future__ import annotations

from .eval_model import eval_model
from .generate import GenerationSettings, Prompt, generate, generate_ids, stream
from .load import Loaded, load_pretrained_model

__all__ = ["load_pretrained_model", "generate", "generate_ids", "stream", "Prompt", "GenerationSettings",
           "eval_model", "Loaded"]
