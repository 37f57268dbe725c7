"""One optimiser step of a whole tiny GemForCausalLM built around the component under check.

Around it, the smallest built-in parts: a 1-layer vicuna of width 32 (an LLM or a template under
check brings its family's own ``tiny_arch``), the tiny 1D ECG ViT of width 32 (a vision tower
under check replaces it) and a linear connector. The batch: two conversations rendered by the
model's template, placeholders expanded by the data layer, with random signals or images.
"""
from __future__ import annotations

import functools

import numpy as np
import torch
from PIL import Image

from ..config import ConnectorConfig, ECGConfig, LLMConfig, ModelConfig, VisionConfig
from ..template.base import Turn
from .kit import Failed, Findings

CONTEXT_LLM_ARCH = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                        num_key_value_heads=2)
TOKENIZER_VOCAB = 320
CONTEXT_ECG = dict(name="gemfactory:vit1d", arch={"tiny": True, "width": 32, "layers": 1, "heads": 2})
SYSTEM = Turn("system", "You read electrocardiograms.")
QUESTIONS = [("What is the rhythm of this {m}?", "Sinus rhythm at 72 beats per minute."),
             ("Is the rate normal?", "Yes, the rate is normal.")]
TOKENIZER_TEXTS = [text for pair in QUESTIONS for text in pair] * 4 + [SYSTEM.text, "ECG image"]


def conversation(placeholder: str = "<ecg>", modality: str = "ECG") -> list[Turn]:
    """Two user/assistant exchanges; the first question holds the placeholder."""
    (q1, a1), (q2, a2) = QUESTIONS
    return [Turn("user", f"{placeholder}\n{q1.format(m=modality)}"), Turn("assistant", a1),
            Turn("user", q2), Turn("assistant", a2)]


@functools.lru_cache(maxsize=None)
def tiny_tokenizer(llm: str, template: str | None = None):
    """The LLM family's byte-level BPE trained on the kit's texts and the marker words of
    ``template`` (default: the family's), with the placeholder tokens."""
    from ..model.builder import build_tokenizer
    from ..registry import LLMS, TEMPLATES

    markers = TEMPLATES.get(template or LLMS.get(llm).default_template)().marker_text()
    cfg = ModelConfig(llm=LLMConfig(name=llm, tokenizer_vocab_size=TOKENIZER_VOCAB))
    return build_tokenizer(cfg, [*TOKENIZER_TEXTS, markers])


def model_config(llm: str = "gemfactory:vicuna", llm_arch: dict | None = None, vision: dict | None = None,
                 ecg: dict | None = None, connector: str = "gemfactory:linear",
                 template: str | None = "gemfactory:vicuna_v1") -> ModelConfig:
    """A tiny model config: the vision tower when given (image samples), else an ECG encoder.
    Built-ins are named fully, so that a plugin sharing their name does not make them ambiguous;
    ``template=None``: the LLM family's default."""
    if vision is None and ecg is None:
        ecg = CONTEXT_ECG
    return ModelConfig(
        llm=LLMConfig(name=llm, arch=CONTEXT_LLM_ARCH if llm_arch is None else llm_arch, tokenizer_vocab_size=TOKENIZER_VOCAB),
        vision=VisionConfig(**vision) if vision else None,
        ecg=None if vision else ECGConfig(**ecg),
        connectors={"image" if vision else "ecg": ConnectorConfig(name=connector)},
        template=template,
    )


def check_train_step(findings: Findings, cfg: ModelConfig, part: str | None) -> None:
    """``part``: the model attribute holding the component (``ecg_encoder``, ``connectors`` ...)
    whose parameters must change; None: any parameter (a template)."""
    findings.check("train step", _train_step, cfg, part)


def tiny_model_and_batch(cfg: ModelConfig) -> tuple:
    """(model, a two-sample training batch, the template) of the tiny config, seeded."""
    from ..data.dataset import Collator
    from ..data.processor import Processor
    from ..model.builder import build_model
    from ..registry import LLMS, TEMPLATES

    tokenizer = tiny_tokenizer(cfg.llm.name, cfg.template)
    torch.manual_seed(0)
    model = build_model(cfg, tokenizer)
    template = TEMPLATES.get(cfg.template or LLMS.get(cfg.llm.name).default_template)()
    processor = Processor.from_model(model, tokenizer, template, max_length=512)
    batch = Collator(tokenizer.pad_token_id)([_sample(processor, model, seed) for seed in (0, 1)])
    return model, batch, template


def optimizer_step(model, batch) -> float:
    """One AdamW step over the parameters that require grad; the loss before it."""
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3, weight_decay=0.0)
    model.train()
    loss = model(**batch).loss
    if not torch.isfinite(loss):
        raise Failed(f"the tiny model's loss is {loss.item()} on its first batch")
    loss.backward()
    optimizer.step()
    return loss.item()


def _train_step(cfg: ModelConfig, part: str | None) -> str:
    model, batch, template = tiny_model_and_batch(cfg)
    module = model if part is None else getattr(model, part)
    params = [p for p in module.parameters() if p.requires_grad]
    before = [p.detach().clone() for p in params]
    loss = optimizer_step(model, batch)
    changed = sum(not torch.equal(b, p.detach()) for b, p in zip(before, params))
    what = "model" if part is None else part.replace("_", " ")
    if params and not changed:
        raise Failed(f"one step changed none of the {len(params)} parameter tensors of the {what}")
    moved = f"{changed} of {len(params)} {what} tensors changed" if params else f"no parameters in the {what}"
    return f"one AdamW step of a tiny {cfg.llm.name.rpartition(':')[2]} model (template {template.name}): loss {loss:.3f}, {moved}"


def _sample(processor, model, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    if model.vision_tower is not None:
        image = Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8))
        inputs = processor.image_inputs(image)
        turns = conversation("<image>", "ECG image")
    else:
        spec = model.ecg_encoder.signal_spec
        inputs = {"ecg": torch.from_numpy(rng.standard_normal((spec.n_leads, spec.n_samples), dtype=np.float32))}
        turns = conversation()
    feats = processor.encode(turns, has_image="pixel_values" in inputs, has_ecg="ecg" in inputs,
                             image_size=inputs.get("image_size"))
    return {**feats, **inputs}
