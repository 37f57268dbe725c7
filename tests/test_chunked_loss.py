"""training.fused_loss: chunked lm_head + cross-entropy equals transformers' causal-LM loss and its
gradients, never builds the whole logits, and the model and memory estimate use it."""
import copy
import sys
import types

import pytest
import torch
from transformers.loss.loss_utils import ForCausalLMLoss

from gemfactory.data.dataset import Collator, GemDataset
from gemfactory.data.packing import REAL_TOKENS, PackingCollator
from gemfactory.data.processor import Processor
from gemfactory.model import chunked_loss
from gemfactory.model.chunked_loss import linear_cross_entropy


def _case(bias: bool, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    hidden = torch.randn(3, 41, 16, generator=gen, requires_grad=True)
    head = torch.nn.Linear(16, 97, bias=bias)
    labels = torch.randint(0, 97, (3, 41), generator=gen)
    labels[0, :10] = -100
    labels[2, 30:] = -100
    return hidden, head, labels


def _grads(loss, hidden, head):
    params = [hidden, *head.parameters()]
    return [g.clone() for g in torch.autograd.grad(loss, params)]


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("num_items", [None, 77])
def test_loss_and_grads_equal_full_logits(bias, num_items):
    hidden, head, labels = _case(bias)
    want = ForCausalLMLoss(head(hidden), labels, 97, num_items_in_batch=num_items)
    got = linear_cross_entropy(hidden, head, labels, num_items_in_batch=num_items, chunk=8)
    assert abs(got.item() - want.item()) <= 1e-5
    for g, w in zip(_grads(got, hidden, head), _grads(want, hidden, head)):
        torch.testing.assert_close(g, w, atol=1e-5, rtol=1e-5)


def test_logits_only_in_chunks_and_frozen_head(monkeypatch):
    hidden, head, labels = _case(False)
    head.requires_grad_(False)  # e.g. LoRA: lm_head frozen, no weight gradient computed
    rows = []
    real_linear = torch.nn.functional.linear
    monkeypatch.setattr(chunked_loss.F, "linear", lambda x, w, b=None: rows.append(len(x)) or real_linear(x, w, b))
    got = linear_cross_entropy(hidden, head, labels, chunk=8)
    monkeypatch.undo()
    labelled = int((labels[:, 1:] != -100).sum())
    assert max(rows) == 8 and sum(rows) == labelled  # only labelled tokens, 8 at a time
    want = ForCausalLMLoss(head(hidden), labels, 97)
    torch.testing.assert_close(torch.autograd.grad(got, hidden)[0], torch.autograd.grad(want, hidden)[0],
                               atol=1e-5, rtol=1e-5)


def test_liger_path_called_like_the_chunked_one(monkeypatch):
    """liger-kernel is not installed here (CUDA/Triton only): a stand-in with its loss class's
    call signature checks what the CUDA path hands it."""
    calls = []

    class FakeLiger(torch.nn.Module):
        def __init__(self, reduction="mean"):
            super().__init__()
            self.reduction = reduction

        def forward(self, weight, h, target, bias=None):
            calls.append((self.reduction, h.shape))
            return torch.nn.functional.cross_entropy(torch.nn.functional.linear(h, weight, bias), target,
                                                     reduction=self.reduction)

    module = types.ModuleType("liger_kernel.transformers.fused_linear_cross_entropy")
    module.LigerFusedLinearCrossEntropyLoss = FakeLiger
    for name in ("liger_kernel", "liger_kernel.transformers"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, module.__name__, module)
    hidden, head, labels = _case(True)
    got = linear_cross_entropy(hidden, head, labels, use_liger=True)
    want = ForCausalLMLoss(head(hidden), labels, 97)
    assert calls == [("sum", (int((labels[:, 1:] != -100).sum()), 16))]
    assert abs(got.item() - want.item()) <= 1e-5


@pytest.mark.parametrize("packed", [False, True])
def test_model_fused_loss_equals_default(tiny_built, packed):
    recipe, tok, model, template = tiny_built
    model = copy.deepcopy(model).float().eval()
    if packed:
        model.language_model.set_attn_implementation("sdpa_packed")
    proc = Processor.from_model(model, tok, template, 256)
    ds = GemDataset(recipe.data.train, proc, recipe.data.image_folder, recipe.data.ecg_folder)
    feats = [ds[i] for i in range(8)]
    batch = (PackingCollator(tok.pad_token_id, 600) if packed else Collator(tok.pad_token_id))(feats)
    batch.pop(REAL_TOKENS, None)
    results = []
    for fused in (False, True):
        model.fused_loss = fused
        model.zero_grad(set_to_none=True)
        out = model(**batch)
        out.loss.backward()
        results.append((out.loss.item(), {n: p.grad.clone() for n, p in model.named_parameters()
                                          if p.grad is not None}, out.logits))
    (loss_a, grads_a, logits_a), (loss_b, grads_b, logits_b) = results
    assert logits_a is not None and logits_b is None  # the fused path never returns logits
    assert abs(loss_a - loss_b) <= 1e-5
    assert grads_a.keys() == grads_b.keys()
    for name in grads_a:
        torch.testing.assert_close(grads_b[name], grads_a[name], atol=1e-5, rtol=1e-4, msg=name)


def test_recipe_key_and_where_it_is_refused(tiny_built, tiny_data, tmp_path):
    from gemfactory.config import recipe_from_dict
    from gemfactory.errors import ConfigError
    from gemfactory.train.trainer import _check_fused_loss

    from conftest import tiny_recipe

    raw = tiny_recipe(tiny_data, tmp_path)
    raw["training"]["fused_loss"] = True
    assert recipe_from_dict(raw).training.fused_loss is True
    model = copy.deepcopy(tiny_built[2])
    assert _check_fused_loss(model, None) and _check_fused_loss(model, 2)
    with pytest.raises(ConfigError, match="training.fused_loss: cannot be used here: ZeRO-3"):
        _check_fused_loss(model, 3)
    model.language_model.config.final_logit_softcapping = 30.0
    with pytest.raises(ConfigError, match="final_logit_softcapping"):
        _check_fused_loss(model, None)


def test_training_with_packing_and_fused_loss_logs_the_same_losses(tiny_data, tmp_path, monkeypatch):
    """Through the trainer (HF Trainer passes num_items_in_batch; packed rows flattened under
    sdpa_packed): the logged losses and gradient norms of 4 steps equal those of the plain loss."""
    import json

    from gemfactory.config import recipe_from_dict
    from gemfactory.train.trainer import train

    from conftest import tiny_recipe

    from gemfactory.model import modeling

    calls = []
    real = modeling.linear_cross_entropy
    monkeypatch.setattr(modeling, "linear_cross_entropy", lambda *a, **k: calls.append(1) or real(*a, **k))
    logged, used = {}, {}
    for fused in (False, True):
        out = tmp_path / str(fused)
        raw = tiny_recipe(tiny_data, out, max_steps=4, batch_size=8, gradient_accumulation_steps=2)
        raw["data"].update(packing=True, group_by="modality_length")
        raw["training"].update(fused_loss=fused, report_to=[])
        torch.manual_seed(0)
        train(recipe_from_dict(raw))
        rows = [json.loads(line) for line in (out / "finetune" / "metrics.jsonl").read_text().splitlines()]
        logged[fused] = [(r["step"], r["loss"], r["grad_norm"]) for r in rows if "loss" in r]
        used[fused] = len(calls)
    assert used[False] == 0 and used[True] >= 4  # every micro-batch of the fused run through the chunked loss
    assert len(logged[True]) == 4 and [s for s, _, _ in logged[True]] == [s for s, _, _ in logged[False]]
    for (_, a, ga), (_, b, gb) in zip(logged[False], logged[True]):
        assert a == pytest.approx(b, abs=1e-5) and ga == pytest.approx(gb, rel=1e-4, abs=1e-5)


def test_fused_loss_with_a_lora_llm(tiny_built):
    """LoRA wraps the LLM's layers (peft): the fused path still finds the decoder and lm_head."""
    from gemfactory.config import StageConfig
    from gemfactory.train.tuning import apply_tuning

    recipe, tok, model, template = tiny_built
    model = copy.deepcopy(model).float().eval()
    apply_tuning(model, StageConfig(tune={"llm": "lora"}))
    proc = Processor.from_model(model, tok, template, 256)
    ds = GemDataset(recipe.data.train, proc, recipe.data.image_folder, recipe.data.ecg_folder)
    batch = Collator(tok.pad_token_id)([ds[i] for i in range(4)])
    losses = []
    for fused in (False, True):
        model.fused_loss = fused
        losses.append(model(**batch).loss.item())
    assert abs(losses[0] - losses[1]) <= 1e-5
