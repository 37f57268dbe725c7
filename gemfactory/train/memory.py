"""Peak GPU memory of a training stage per device, and whether it fits a given GPU.

``gemfactory memory RECIPE --gpu-memory 24`` builds the model on PyTorch's meta device (no weights
read or allocated: only the configs and the tokenizer are needed), applies each stage's tuning and
adds up, per device:

- weights, gradients and Adam states from the actual parameters and dtypes after tuning (LoRA
  included); under DeepSpeed (bf16): bf16 weights and gradients, fp32 masters and Adam states,
  split over devices as ZeRO-2 / ZeRO-3 split them;
- activations kept for backward by the LLM (per layer and token: the hidden states and the
  projections' inputs; the attention-score matrix only with eager attention; with gradient
  checkpointing only each layer's input plus one layer recomputed; under bf16 autocast of fp32
  weights also their half-precision copies) and by trainable towers;
- the logits (compute dtype, their fp32 copy for the loss and its gradient), or with
  ``training.fused_loss`` one chunk of them plus the gradients the chunked loss keeps.

Every sample is assumed ``max_length`` tokens long with one image and one ECG (the worst case a
batch can reach). The CUDA context and allocator slack come on top (``CUDA_OVERHEAD``).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

GiB = 2**30
CUDA_OVERHEAD = 1.0 * GiB  # context, cuBLAS workspaces, allocator fragmentation
BACKWARD_FACTOR = 1.15  # gradient buffers of the activations alive while backward runs


@dataclass
class MemoryEstimate:
    weights: float
    gradients: float
    optimizer: float
    activations: float
    logits: float

    @property
    def total(self) -> float:
        return self.weights + self.gradients + self.optimizer + (self.activations + self.logits) * BACKWARD_FACTOR

    def describe(self) -> str:
        parts = ", ".join(f"{k} {getattr(self, k) / GiB:.2f}" for k in
                          ("weights", "gradients", "optimizer", "activations", "logits"))
        return f"{self.total / GiB:.2f} GiB ({parts} GiB)"

    def verdict(self, gpu_gib: float) -> str:
        need = (self.total + CUDA_OVERHEAD) / GiB
        word = "fits" if need <= gpu_gib else "does NOT fit"
        return f"{word} in {gpu_gib:g} GiB (needs about {need:.1f} GiB with {CUDA_OVERHEAD / GiB:.0f} GiB CUDA overhead)"


def estimate_stage(model, recipe, stage, devices: int = 1, zero: int | None = None) -> MemoryEstimate:
    training = recipe.training
    batch = stage.batch_size
    seq = stage.max_length or recipe.data.max_length
    compute = 2 if training.bf16 or zero is not None or _dtype(model) in (torch.bfloat16, torch.float16) else 4
    weights = grads = optim = 0.0
    for p in model.parameters():
        n, size = p.numel(), p.element_size()
        if zero is not None:  # DeepSpeed mixed precision: bf16 copies, fp32 masters + Adam
            weights += n * compute
            if p.requires_grad:
                grads += n * compute
                optim += n * 12
        else:
            weights += n * size
            if p.requires_grad:
                grads += n * size
                optim += n * 2 * size
    if zero is not None and zero >= 2:
        grads, optim = grads / devices, optim / devices
    if zero == 3:
        weights /= devices
    activations = _llm_activations(model, batch, seq, compute, training.gradient_checkpointing)
    if zero is None and compute < _dtype(model).itemsize:  # autocast keeps a half copy of each weight for backward
        activations += sum(p.numel() for p in model.language_model.parameters()) * compute
    for tower in (model.vision_tower, model.ecg_encoder):
        if tower is not None and any(p.requires_grad for p in tower.parameters()):
            activations += _tower_activations(tower, batch, compute)
    logits = _logits_bytes(model, batch * seq, compute, training.fused_loss)
    return MemoryEstimate(weights, grads, optim, activations, logits)


def _logits_bytes(model, tokens: int, compute: int, fused: bool) -> float:
    """The logits in compute dtype, their fp32 copy for the loss and its gradient; with
    training.fused_loss one chunk's logits (and softmax) at a time, plus the hidden-state and
    lm_head gradients the chunked loss keeps until backward."""
    from ..model.chunked_loss import CHUNK_TOKENS

    vocab = model.get_input_embeddings().num_embeddings
    if not fused:
        return tokens * vocab * (compute + 4 + 4)
    width = model.config.text_config.hidden_size
    return min(tokens, CHUNK_TOKENS) * vocab * (compute + 4) + tokens * width * compute + vocab * width * 4


def _dtype(model) -> torch.dtype:
    return next(model.parameters()).dtype


def _llm_activations(model, batch: int, seq: int, compute: int, checkpointing: bool) -> float:
    cfg = model.config.text_config
    width, layers = cfg.hidden_size, cfg.num_hidden_layers
    inter = getattr(cfg, "intermediate_size", None) or 4 * width
    heads = cfg.num_attention_heads
    kv = (getattr(cfg, "num_key_value_heads", None) or heads) / heads * width
    # kept per token: 2 norms (in + out), q, k, v (+ their rotary copies), attention output, MLP
    # input and 4 intermediate-width tensors (gated: gate, up, act, product; GELU-tanh MLPs keep
    # about as many for the activation's own steps)
    per_token = (6 * width + 4 * kv + 4 * inter) * compute
    residual = 4 if _dtype(model) == torch.float32 else compute  # the residual stream's dtype
    per_token += 2 * width * residual
    if (cfg._attn_implementation or "sdpa") == "eager":  # scores and probabilities materialised
        per_token += 2 * heads * seq * compute
    tokens = batch * seq
    if checkpointing:  # every layer's input, plus one layer's activations while it is recomputed
        return tokens * (layers * width * residual + per_token)
    return tokens * layers * per_token


def _tower_activations(tower, batch: int, compute: int) -> float:
    width = getattr(tower, "hidden_size", 0)
    params = sum(p.numel() for p in tower.parameters())
    layers = max(1, round(params / max(1, 12 * width * width)))  # a transformer block holds ~12 width^2
    return batch * tower.num_tokens * layers * 16 * width * compute


def meta_model(recipe, tokenizer):
    """The recipe's model with every tensor on the meta device: shapes and dtypes, no memory."""
    from ..model.builder import DTYPES, build_config
    from ..model.modeling import GemForCausalLM

    config = build_config(recipe.model, tokenizer, planning=True, origin=recipe.source)  # configs only
    with torch.device("meta"):
        model = GemForCausalLM(config)
    return model.to(DTYPES[recipe.model.llm.dtype])


def memory_report(recipe, gpu_gib: float | None, devices: int = 1, out=print) -> bool:
    """Print each stage's estimate (and verdict); False when a stage does not fit."""
    from ..model.builder import recipe_template
    from ..data.recipe_tokenizer import tokenizer_for_recipe
    from .trainer import deepspeed_config, zero_stage
    from .tuning import apply_tuning, parameter_counts

    zero = zero_stage(deepspeed_config(recipe.training.deepspeed))
    tokenizer = tokenizer_for_recipe(recipe, recipe_template(recipe), planning=True)
    fits = True
    for stage in recipe.stages:
        model = meta_model(recipe, tokenizer)  # every stage's parameters have the same shapes
        tunes = apply_tuning(model, stage, zero)
        trainable = sum(t for t, _ in parameter_counts(model).values())
        est = estimate_stage(model, recipe, stage, devices, zero)
        seq = stage.max_length or recipe.data.max_length
        out(f"== stage {stage.name}: batch {stage.batch_size} x {seq} tokens per device, "
            f"{trainable:,} trainable parameters ({', '.join(f'{k} {v}' for k, v in tunes.items())}), "
            f"{'DeepSpeed ZeRO-%s' % zero if zero is not None else 'no DeepSpeed'}, {devices} device(s), "
            f"gradient checkpointing {'on' if recipe.training.gradient_checkpointing else 'off'}")
        out(f"  memory     {est.describe()}")
        if gpu_gib:
            out(f"  verdict    {est.verdict(gpu_gib)}")
            fits &= (est.total + CUDA_OVERHEAD) / GiB <= gpu_gib
    return fits
