"""Batched, streaming generation on multimodal prompts."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from threading import Thread
from typing import Iterator

import torch

from ..data.dataset import Collator
from ..template.base import Turn
from .load import Loaded


@dataclass
class Prompt:
    turns: list[Turn]  # ends with a user turn
    image: object = None  # path or PIL image
    ecg: object = None  # WFDB record path or tensor [leads, samples]


@dataclass
class GenerationSettings:
    max_new_tokens: int = 64
    temperature: float = 0.0  # 0: greedy
    top_p: float = 1.0
    extra: dict = field(default_factory=dict)

    def kwargs(self, tokenizer, stop_ids) -> dict:
        kw = dict(max_new_tokens=self.max_new_tokens, use_cache=True,
                  pad_token_id=tokenizer.pad_token_id, eos_token_id=stop_ids or None)
        if self.temperature > 0:
            kw.update(do_sample=True, temperature=self.temperature, top_p=self.top_p)
        else:
            kw.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        return {**kw, **self.extra}


def features(loaded: Loaded, prompt: Prompt) -> dict:
    p = loaded.processor
    inputs = p.image_inputs(prompt.image) if prompt.image is not None else {}
    if prompt.ecg is not None:
        inputs["ecg"] = p.load_ecg(prompt.ecg) if isinstance(prompt.ecg, (str, Path)) else prompt.ecg
    feats = p.encode(prompt.turns, has_image=prompt.image is not None, has_ecg=prompt.ecg is not None,
                     generation=True, image_size=inputs.get("image_size"))
    return {**feats, **inputs}


def _batch(loaded: Loaded, prompts: list[Prompt]) -> dict:
    collate = Collator(loaded.tokenizer.pad_token_id, padding_side="left")
    batch = collate([features(loaded, p) for p in prompts])
    device = loaded.model.device
    return {k: v.to(device) for k, v in batch.items() if k != "labels"}


def _stop_ids(loaded: Loaded) -> list[int]:
    from ..template.base import SpecialText

    ids = []
    for s in loaded.template.stop_strings(SpecialText.of(loaded.tokenizer)):
        tok = loaded.tokenizer.convert_tokens_to_ids(s)
        if tok is not None and tok != loaded.tokenizer.unk_token_id:
            ids.append(tok)
    return ids


def generate(loaded: Loaded, prompts: list[Prompt], settings: GenerationSettings | None = None) -> list[str]:
    settings = settings or GenerationSettings()
    batch = _batch(loaded, prompts)
    out = loaded.model.generate(**batch, **settings.kwargs(loaded.tokenizer, _stop_ids(loaded)))
    return [t.strip() for t in loaded.tokenizer.batch_decode(out, skip_special_tokens=True)]


def stream(loaded: Loaded, prompt: Prompt, settings: GenerationSettings | None = None) -> Iterator[str]:
    from transformers import TextIteratorStreamer

    settings = settings or GenerationSettings()
    batch = _batch(loaded, [prompt])
    streamer = TextIteratorStreamer(loaded.tokenizer, skip_prompt=False, skip_special_tokens=True)
    kwargs = {**batch, **settings.kwargs(loaded.tokenizer, _stop_ids(loaded)), "streamer": streamer}
    thread = Thread(target=loaded.model.generate, kwargs=kwargs, daemon=True)
    thread.start()
    yield from streamer
    thread.join()
