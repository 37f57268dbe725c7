"""Causal-LM loss without the whole logits tensor (``training.fused_loss``).

transformers computes ``lm_head`` over every token and keeps the [tokens, vocab] logits (and their
fp32 copy and gradient) for backward: with a 150k-token vocabulary that is the largest activation of
a step. Here only tokens with a label go through ``lm_head``, in chunks of :data:`CHUNK_TOKENS`:
each chunk's logits give its loss and, right away, the gradients of the hidden states and of the
``lm_head`` weights, and are then dropped. On CUDA, liger-kernel's fused linear cross-entropy
(Triton) does the same when the package is installed (it is not a dependency).

The loss is transformers' ``ForCausalLMLoss``: labels shifted by one, -100 ignored, mean over the
labelled tokens, or their sum over ``num_items_in_batch`` when the Trainer passes it.
"""
from __future__ import annotations

import importlib.util

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100
CHUNK_TOKENS = 1024  # tokens per lm_head chunk: logits of chunk x vocab floats at a time


def liger_available() -> bool:
    return importlib.util.find_spec("liger_kernel") is not None


class _ChunkedLinearCrossEntropy(torch.autograd.Function):
    """Summed cross-entropy of ``hidden @ weight.T + bias`` against ``targets``; the gradients are
    computed chunk by chunk in forward, so backward only scales them."""

    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, chunk):
        need_h, need_w, need_b = ctx.needs_input_grad[:3]
        grad_h = torch.empty_like(hidden) if need_h else None
        grad_w = torch.zeros_like(weight, dtype=torch.float32) if need_w else None
        grad_b = torch.zeros_like(bias, dtype=torch.float32) if need_b else None
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        for start in range(0, hidden.shape[0], chunk):
            h, t = hidden[start:start + chunk], targets[start:start + chunk]
            logits = F.linear(h, weight, bias).float()
            lse = logits.logsumexp(-1)
            total += (lse - logits.gather(1, t[:, None]).squeeze(1)).sum()
            if not (need_h or need_w or need_b):
                continue
            grad_logits = logits.sub_(lse[:, None]).exp_()  # softmax, in place of the logits
            grad_logits[torch.arange(len(t), device=t.device), t] -= 1.0
            if need_h:
                grad_h[start:start + chunk] = grad_logits.to(weight.dtype) @ weight
            if need_w:
                grad_w += grad_logits.T @ h.float()
            if need_b:
                grad_b += grad_logits.sum(0)
        ctx.save_for_backward(*(g for g in (grad_h, grad_w, grad_b) if g is not None))
        ctx.which = (need_h, need_w, need_b)
        ctx.dtypes = (weight.dtype, None if bias is None else bias.dtype)
        return total

    @staticmethod
    def backward(ctx, grad_out):
        saved = iter(ctx.saved_tensors)
        grads = [next(saved) * grad_out if need else None for need in ctx.which]
        if grads[1] is not None:
            grads[1] = grads[1].to(ctx.dtypes[0])
        if grads[2] is not None:
            grads[2] = grads[2].to(ctx.dtypes[1])
        return grads[0], grads[1], grads[2], None, None


def _labelled(hidden: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Hidden states of the tokens that predict a label, and those labels (shifted by one)."""
    targets = F.pad(labels, (0, 1), value=IGNORE_INDEX)[..., 1:].reshape(-1).to(hidden.device)
    keep = (targets != IGNORE_INDEX).nonzero().squeeze(1)
    return hidden.reshape(-1, hidden.shape[-1]).index_select(0, keep), targets.index_select(0, keep)


def linear_cross_entropy(hidden: torch.Tensor, lm_head: torch.nn.Linear, labels: torch.Tensor,
                         num_items_in_batch=None, chunk: int = CHUNK_TOKENS, use_liger: bool | None = None):
    """The causal-LM loss of ``lm_head(hidden)`` against ``labels`` ([B, T, D] and [B, T])."""
    h, targets = _labelled(hidden, labels)
    if use_liger is None:
        use_liger = hidden.is_cuda and liger_available()
    if use_liger:
        from liger_kernel.transformers.fused_linear_cross_entropy import (
            LigerFusedLinearCrossEntropyLoss,
        )

        total = LigerFusedLinearCrossEntropyLoss(reduction="sum")(lm_head.weight, h, targets, lm_head.bias)
    else:
        total = _ChunkedLinearCrossEntropy.apply(h, lm_head.weight, lm_head.bias, targets, chunk)
    if num_items_in_batch is None:
        return total / len(targets)  # no labelled token: nan, as transformers' mean gives
    if torch.is_tensor(num_items_in_batch):
        num_items_in_batch = num_items_in_batch.to(total.device)
    return total / num_items_in_batch


def supports_fused_loss(language_model) -> str | None:
    """Why this LM's loss cannot be fused, or None: it must end in a plain ``lm_head`` Linear with
    no logit transformation."""
    head = language_model.get_output_embeddings()
    if not isinstance(head, torch.nn.Linear):
        return f"its output layer is a {type(head).__name__}, not an nn.Linear"
    cfg = language_model.config
    for attr in ("final_logit_softcapping", "logit_scale"):
        if getattr(cfg, attr, None) not in (None, 1.0):
            return f"its config sets {attr}"
    return None
