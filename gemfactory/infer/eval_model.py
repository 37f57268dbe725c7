"""One call from a checkpoint and a question to an answer, in the manner of LLaVA's ``eval_model``.

    from gemfactory.infer import eval_model
    answer = eval_model(model_path="runs/tiny-gem", query="What is the heart rate?",
                        ecg="data/tiny-gem/ecg/rec_0001", max_new_tokens=32)

``args`` may be an argparse namespace, a dict or any object with those attributes; keywords
override it. LLaVA's names ``image_file`` / ``ecg_file`` are accepted for ``image`` / ``ecg``.
"""
from __future__ import annotations

from ..errors import GemError
from .generate import GenerationSettings, Prompt, generate
from .load import Loaded, load_pretrained_model

DEFAULTS = {
    "model_path": None, "query": None, "ecg": None, "image": None,
    "temperature": 0.0, "top_p": 1.0, "max_new_tokens": 64, "seed": None,
    "device": "cpu", "dtype": "float32", "load_4bit": False, "load_8bit": False,
}
ALIASES = {"image_file": "image", "ecg_file": "ecg", "model": "model_path", "question": "query"}


def _options(args, overrides: dict) -> dict:
    given = dict(args) if isinstance(args, dict) else dict(vars(args)) if args is not None else {}
    given.update(overrides)
    opts = dict(DEFAULTS)
    for key, value in given.items():
        key = ALIASES.get(key, key)
        if key in opts and value is not None:
            opts[key] = value
    return opts


def eval_model(args=None, *, loaded: Loaded | None = None, **overrides) -> str:
    """Answer ``query`` about the optional ``ecg`` record and ``image`` with the model at ``model_path``.

    Pass ``loaded`` (from :func:`load_pretrained_model`) to reuse a model across calls.
    """
    import torch

    opts = _options(args, overrides)
    if not opts["query"]:
        raise GemError("eval_model: query is missing (the question to ask)")
    if loaded is None:
        if not opts["model_path"]:
            raise GemError("eval_model: model_path is missing (a checkpoint or run folder)")
        loaded = load_pretrained_model(opts["model_path"], device=opts["device"], dtype=opts["dtype"],
                                       load_4bit=bool(opts["load_4bit"]), load_8bit=bool(opts["load_8bit"]))
    settings = GenerationSettings(int(opts["max_new_tokens"]), float(opts["temperature"]), float(opts["top_p"]))
    if opts["seed"] is not None:
        torch.manual_seed(int(opts["seed"]))
    prompt = Prompt.ask(str(opts["query"]), ecg=opts["ecg"], image=opts["image"])
    return generate(loaded, prompt, settings)
