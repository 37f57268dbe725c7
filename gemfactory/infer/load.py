"""Load a trained checkpoint (model folder or run folder) for inference.

``load_4bit`` / ``load_8bit`` quantise the language model with bitsandbytes (CUDA only); the
vision tower, the ECG encoder, the connectors and the LM head stay in ``dtype``. Every problem
with the options (unknown dtype or device, bitsandbytes missing, no CUDA device, both bit widths
asked for) is a one-line :class:`GemError` raised before any weight is read.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass

import torch
from safetensors import SafetensorError

from ..data.processor import Processor
from ..ecg.spec import SignalSpec
from ..errors import CheckpointError, GemError
from ..model.checkpoint import resolve_model_dir
from ..registry import TEMPLATES
from ..template.base import ChatTemplate

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
DTYPE_ALIASES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16", "half": "float16"}

# kept out of bitsandbytes quantisation: small, precision-sensitive, or not plain LM Linear layers
QUANT_SKIP_MODULES = ["vision_tower", "ecg_encoder", "connectors", "language_model.lm_head"]


@dataclass
class Loaded:
    model: object
    tokenizer: object
    processor: Processor
    template: ChatTemplate
    signal_spec: SignalSpec | None
    path: str


def resolve_dtype(dtype) -> torch.dtype:
    """``"float32"``/``"bf16"``/``torch.float16``... -> torch dtype; anything else a GemError."""
    if isinstance(dtype, torch.dtype) and dtype in DTYPES.values():
        return dtype
    name = DTYPE_ALIASES.get(str(dtype).lower(), str(dtype).lower())
    if name not in DTYPES:
        raise GemError(f"dtype {dtype!r}: expected one of {', '.join(DTYPES)} (or fp32, bf16, fp16)")
    return DTYPES[name]


def resolve_device(device) -> torch.device:
    """``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"auto"`` (CUDA when present) -> torch device."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise GemError(f"device {device!r}: expected cpu, cuda, cuda:N, mps or auto") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise GemError(f"device {device!r}: no CUDA device is available on this machine")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise GemError(f"device {device!r}: only {torch.cuda.device_count()} CUDA device(s) present")
    if dev.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise GemError(f"device {device!r}: MPS is not available on this machine")
    return dev


def check_quantization(load_4bit: bool, load_8bit: bool, device: torch.device) -> None:
    """Fail early, in one line, when 4/8-bit loading cannot work here."""
    if not (load_4bit or load_8bit):
        return
    if load_4bit and load_8bit:
        raise GemError("load_4bit and load_8bit: choose one of them, not both")
    flag = "load_4bit" if load_4bit else "load_8bit"
    if importlib.util.find_spec("bitsandbytes") is None:
        raise GemError(f"{flag} needs the bitsandbytes package, which is not installed "
                       f"(pip install bitsandbytes), and a CUDA GPU")
    if not torch.cuda.is_available():
        raise GemError(f"{flag} needs a CUDA GPU (bitsandbytes quantisation), but none is available")
    if device.type != "cuda":
        raise GemError(f"{flag} runs on CUDA only; got device {str(device)!r}")


def quantization_config(load_4bit: bool, load_8bit: bool, dtype: torch.dtype):
    """The BitsAndBytesConfig for the language model; towers and connectors are skipped."""
    from transformers import BitsAndBytesConfig

    if load_4bit:
        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_compute_dtype=dtype, bnb_4bit_use_double_quant=True,
                                  bnb_4bit_quant_type="nf4", llm_int8_skip_modules=list(QUANT_SKIP_MODULES))
    return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=list(QUANT_SKIP_MODULES))


def load_pretrained_model(path, device="cpu", dtype="float32",
                          load_4bit: bool = False, load_8bit: bool = False) -> Loaded:
    """A checkpoint folder (or a run folder with a ``latest`` file) -> :class:`Loaded`, in eval mode."""
    from transformers import AutoTokenizer

    from ..model import GemForCausalLM

    torch_dtype = resolve_dtype(dtype)
    dev = resolve_device(device)
    check_quantization(load_4bit, load_8bit, dev)
    folder = resolve_model_dir(path)
    kwargs = {"dtype": torch_dtype}
    if load_4bit or load_8bit:
        if torch_dtype == torch.float32:  # bitsandbytes computes in half precision
            kwargs["dtype"] = torch_dtype = torch.float16
        kwargs["quantization_config"] = quantization_config(load_4bit, load_8bit, torch_dtype)
        kwargs["device_map"] = {"": dev.index if dev.index is not None else torch.cuda.current_device()}
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a bar per load is noise in chat, eval and the app
    try:
        model = GemForCausalLM.from_pretrained(folder, **kwargs)
        tokenizer = AutoTokenizer.from_pretrained(folder)
    except GemError:
        raise
    except (OSError, ValueError, KeyError, SafetensorError) as exc:  # missing, malformed or truncated files
        raise CheckpointError(f"cannot load checkpoint {folder}: {type(exc).__name__}: {exc}") from None
    finally:
        hf_logging.enable_progress_bar()
    if not (load_4bit or load_8bit):
        model.to(dev)
    model.eval()
    template = TEMPLATES.get(model.config.template)()
    processor = Processor.from_model(model, tokenizer, template)
    return Loaded(model, tokenizer, processor, template, model.config.signal_spec, str(folder))
