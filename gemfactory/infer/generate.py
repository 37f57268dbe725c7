"""Batched, streaming generation on multimodal prompts.

Prompts of any mix of modalities (text only, ECG, image, both) are batched together: the text is
left-padded and HF ``generate`` derives position ids from the attention mask, so a prompt gives
the same greedy tokens alone or in a batch. The KV cache is always on.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from threading import Thread
from typing import Iterator

from ..data.dataset import Collator
from ..errors import GemError
from ..template.base import SpecialText, Turn
from .load import Loaded


@dataclass
class Prompt:
    turns: list[Turn]  # ends with a user turn
    image: object = None  # path or PIL image
    ecg: object = None  # WFDB record path or tensor [leads, samples]

    @classmethod
    def ask(cls, question: str, ecg=None, image=None) -> "Prompt":
        """One user question; ``<ecg>`` / ``<image>`` placeholders are added in front when missing."""
        prefix = ("<ecg>\n" if ecg is not None and "<ecg>" not in question else "") + \
                 ("<image>\n" if image is not None and "<image>" not in question else "")
        return cls([Turn("user", prefix + question)], image=image, ecg=ecg)


@dataclass
class GenerationSettings:
    max_new_tokens: int = 64
    temperature: float = 0.0  # 0: greedy
    top_p: float = 1.0
    extra: dict = field(default_factory=dict)  # any other HF generate() keyword, e.g. min_new_tokens

    def __post_init__(self):
        if not isinstance(self.max_new_tokens, int) or self.max_new_tokens < 1:
            raise GemError(f"max_new_tokens {self.max_new_tokens!r}: expected a whole number of at least 1")
        if not self.temperature >= 0:
            raise GemError(f"temperature {self.temperature!r}: expected 0 (greedy) or more")
        if not 0 < self.top_p <= 1:
            raise GemError(f"top_p {self.top_p!r}: expected a number in (0, 1]")

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
    if not prompts:
        raise GemError("generate: no prompt given")
    collate = Collator(loaded.tokenizer.pad_token_id, padding_side="left")
    batch = collate([features(loaded, p) for p in prompts])
    device = loaded.model.device
    dtype = loaded.model.dtype
    out = {}
    for k, v in batch.items():
        if k == "labels":
            continue
        v = v.to(device)
        out[k] = v.to(dtype) if v.is_floating_point() else v  # pixels / signals follow the model's dtype
    return out


def _stop_ids(loaded: Loaded) -> list[int]:
    ids = []
    for s in loaded.template.stop_strings(SpecialText.of(loaded.tokenizer)):
        tok = loaded.tokenizer.convert_tokens_to_ids(s)
        if tok is not None and tok != loaded.tokenizer.unk_token_id:
            ids.append(tok)
    return ids


def generate_ids(loaded: Loaded, prompts: list[Prompt], settings: GenerationSettings | None = None,
                 batch_size: int | None = None) -> list[list[int]]:
    """New token ids of each prompt, cut before the first stop token (the padding after it goes too)."""
    settings = settings or GenerationSettings()
    stops = _stop_ids(loaded)
    kwargs = settings.kwargs(loaded.tokenizer, stops)
    size = batch_size or len(prompts) or 1
    out: list[list[int]] = []
    for start in range(0, max(len(prompts), 1), size):
        batch = _batch(loaded, prompts[start:start + size])
        for row in loaded.model.generate(**batch, **kwargs).tolist():
            cut = next((i for i, t in enumerate(row) if t in stops), len(row))
            out.append(row[:cut])
    return out


def generate(loaded: Loaded, prompts, settings: GenerationSettings | None = None,
             batch_size: int | None = None):
    """Answers to ``prompts`` (a list -> list of str, generated in batches); one Prompt -> one str."""
    if isinstance(prompts, Prompt):
        return generate(loaded, [prompts], settings)[0]
    ids = generate_ids(loaded, list(prompts), settings, batch_size)
    return [t.strip() for t in loaded.tokenizer.batch_decode(ids, skip_special_tokens=True)]


def stream(loaded: Loaded, prompt: Prompt, settings: GenerationSettings | None = None) -> Iterator[str]:
    """Yield the answer in pieces as it is generated (greedy: the same text as :func:`generate`)."""
    from transformers import TextIteratorStreamer

    settings = settings or GenerationSettings()
    batch = _batch(loaded, [prompt])  # bad inputs fail here, in the caller's thread
    streamer = TextIteratorStreamer(loaded.tokenizer, skip_prompt=False, skip_special_tokens=True)
    kwargs = {**batch, **settings.kwargs(loaded.tokenizer, _stop_ids(loaded)), "streamer": streamer}
    failure: list[BaseException] = []

    def run():
        try:
            loaded.model.generate(**kwargs)
        except BaseException as exc:  # hand it to the consumer instead of leaving it waiting
            failure.append(exc)
            streamer.end()

    thread = Thread(target=run, daemon=True)
    thread.start()
    try:
        yield from streamer
    finally:
        thread.join()
    if failure:
        raise failure[0]
