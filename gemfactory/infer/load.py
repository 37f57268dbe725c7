"""Load a trained checkpoint (model folder or run folder) for inference."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..data.processor import Processor
from ..ecg.spec import SignalSpec
from ..errors import CheckpointError, GemError
from ..model.checkpoint import resolve_model_dir
from ..registry import TEMPLATES
from ..template.base import ChatTemplate

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class Loaded:
    model: object
    tokenizer: object
    processor: Processor
    template: ChatTemplate
    signal_spec: SignalSpec | None
    path: str


def load_pretrained_model(path, device: str = "cpu", dtype: str = "float32",
                          load_4bit: bool = False, load_8bit: bool = False) -> Loaded:
    from transformers import AutoTokenizer

    from ..model import GemForCausalLM

    folder = resolve_model_dir(path)
    kwargs = {"dtype": DTYPES[dtype]}
    if load_4bit or load_8bit:
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(load_in_4bit=load_4bit, load_in_8bit=load_8bit)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a bar per load is noise in chat, eval and the app
    try:
        model = GemForCausalLM.from_pretrained(folder, **kwargs)
        tokenizer = AutoTokenizer.from_pretrained(folder)
    except GemError:
        raise
    except (OSError, ValueError, KeyError) as exc:
        raise CheckpointError(f"cannot load checkpoint {folder}: {type(exc).__name__}: {exc}") from None
    finally:
        hf_logging.enable_progress_bar()
    if not (load_4bit or load_8bit):
        model.to(device)
    model.eval()
    template = TEMPLATES.get(model.config.template)()
    processor = Processor.from_model(model, tokenizer, template)
    return Loaded(model, tokenizer, processor, template, model.config.signal_spec, str(folder))
