"""Padding-free packing gives the same loss and gradients as padded batches, and no token
attends across samples."""
import copy

import pytest
import torch

from gemfactory.config import recipe_from_dict
from gemfactory.data.dataset import Collator, GemDataset
from gemfactory.data.packing import REAL_TOKENS, PackingCollator, pack_rows
from gemfactory.data.processor import Processor
from gemfactory.errors import ConfigError

from conftest import tiny_recipe


@pytest.fixture(scope="module", params=["sdpa", "sdpa_packed"])
def setup(tiny_built, request):
    """Every test runs with transformers' sdpa (block-diagonal mask) and with gemfactory's
    sdpa_packed kernel (one causal attention per sample)."""
    recipe, tok, model, template = tiny_built
    model = copy.deepcopy(model).float().eval()  # eval: no dropout; gradients still flow
    model.language_model.set_attn_implementation(request.param)
    proc = Processor.from_model(model, tok, template, 256)
    ds = GemDataset(recipe.data.train, proc, recipe.data.image_folder, recipe.data.ecg_folder)
    feats = [ds[i] for i in range(12)]  # text-only, ECG, image and ECG + image samples mixed
    kinds = {("pixel_values" in f, "ecg" in f) for f in feats}
    assert len(kinds) >= 3, kinds
    return model, tok, feats


def _loss_and_grads(model, batch):
    model.zero_grad(set_to_none=True)
    batch = {k: v for k, v in batch.items() if k != REAL_TOKENS}
    loss = model(**batch).loss
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_pack_rows_respects_budget_and_keeps_every_sample():
    lengths = [5, 9, 3, 7, 2, 12, 1]
    rows = pack_rows(lengths, 12)
    assert sorted(i for row in rows for i in row) == list(range(len(lengths)))
    assert all(sum(lengths[i] for i in row) <= 12 for row in rows)
    assert pack_rows([20, 3], 10) == [[0], [1]]  # too long for the budget: a row of its own


def test_packed_loss_and_gradients_equal_padded(setup):
    model, tok, feats = setup
    padded = Collator(tok.pad_token_id)(feats)
    budget = max(len(f["input_ids"]) for f in feats) * 3
    packed = PackingCollator(tok.pad_token_id, budget)(feats)
    assert packed["input_ids"].shape[0] < len(feats)  # several samples share a row
    assert "attention_mask" not in packed
    assert int(packed[REAL_TOKENS]) == int(padded["attention_mask"].sum())
    assert int((packed["labels"] != -100).sum()) <= int((padded["labels"] != -100).sum())
    loss_a, grads_a = _loss_and_grads(model, padded)
    loss_b, grads_b = _loss_and_grads(model, packed)
    assert abs(loss_a.item() - loss_b.item()) <= 1e-5
    assert grads_a.keys() == grads_b.keys()
    for name in grads_a:
        torch.testing.assert_close(grads_b[name], grads_a[name], atol=1e-5, rtol=1e-4, msg=name)


def test_packed_token_loss_sum_equals_padded(setup):
    """Sum of per-token losses / number of supervised tokens, computed by hand."""
    model, tok, feats = setup

    def per_token(batch):
        batch = {k: v for k, v in batch.items() if k not in (REAL_TOKENS, "labels")}
        with torch.no_grad():
            logits = model(**batch).logits
        return logits

    padded = Collator(tok.pad_token_id)(feats)
    packed = PackingCollator(tok.pad_token_id, 10_000)(feats)
    totals = []
    for batch in (padded, packed):
        logits = per_token(batch)[:, :-1]
        labels = batch["labels"][:, 1:]
        keep = labels != -100
        losses = torch.nn.functional.cross_entropy(logits[keep], labels[keep], reduction="sum")
        totals.append((losses.item(), int(keep.sum())))
    assert totals[0][1] == totals[1][1]
    assert abs(totals[0][0] / totals[0][1] - totals[1][0] / totals[1][1]) <= 1e-5


def test_no_attention_across_samples(setup):
    model, tok, feats = setup
    a = next(f for f in feats if "ecg" in f)
    b = next(f for f in feats if f is not a)
    collate = PackingCollator(tok.pad_token_id, 10_000)
    base = collate([a, b])
    assert base["input_ids"].shape[0] == 1  # one row: a then b
    changed = dict(a)
    ids = a["input_ids"].clone()
    text = (ids != model.config.ecg_token_id) & (ids != model.config.image_token_id)
    ids[text] = (ids[text] + 7) % len(tok)
    changed["input_ids"] = ids
    changed["ecg"] = a["ecg"] + 1.0
    other = collate([changed, b])
    with torch.no_grad():
        run = lambda batch: model(**{k: v for k, v in batch.items() if k != REAL_TOKENS}).logits[0]
        la, lb = run(base), run(other)
    n = len(a["input_ids"])
    assert not torch.allclose(la[:n], lb[:n])  # a itself did change
    torch.testing.assert_close(lb[n:n + len(b["input_ids"])], la[n:n + len(b["input_ids"])], atol=1e-6, rtol=0)


def test_recipe_keys(tiny_data, tmp_path):
    raw = tiny_recipe(tiny_data, tmp_path)
    raw["data"].update(packing=True, pack_tokens=512, group_by="modality_length")
    r = recipe_from_dict(raw)
    assert r.data.packing and r.data.pack_tokens == 512 and r.data.group_by == "modality_length"
    raw["data"].update(packing=False)
    with pytest.raises(ConfigError, match="data.pack_tokens"):
        recipe_from_dict(raw)
    raw["data"].update(packing=True, pack_tokens=None, group_by="random")
    with pytest.raises(ConfigError, match="data.group_by"):
        recipe_from_dict(raw)


def _without_count(batch, drop=()):
    return {k: v for k, v in batch.items() if k != REAL_TOKENS and k not in drop}


def test_sample_bounds_found_once_per_batch(setup, monkeypatch):
    """The collator's variable-length kwargs reach every layer's kernel; without them the model
    derives them once per forward pass, never per layer."""
    from gemfactory.model import packed_attention

    model, tok, feats = setup
    model = copy.deepcopy(model)
    model.language_model.set_attn_implementation("sdpa_packed")
    scans, reads = [], []
    real_segments, real_lengths = packed_attention.segments, packed_attention._segment_lengths
    monkeypatch.setattr(packed_attention, "segments", lambda row: scans.append(row) or real_segments(row))
    monkeypatch.setattr(packed_attention, "_segment_lengths", lambda off: reads.append(off) or real_lengths(off))
    packed = PackingCollator(tok.pad_token_id, 10_000)(feats[:4])
    lengths = [len(f["input_ids"]) for f in feats[:4]]
    assert packed["cu_seq_lens_q"].tolist() == [0, *torch.tensor(lengths).cumsum(0).tolist()]
    assert packed["max_length_q"] == max(lengths)
    with torch.no_grad():
        want = model(**_without_count(packed)).logits
    layers = model.config.text_config.num_hidden_layers
    assert scans == [] and len(reads) == layers and all(r is reads[0] for r in reads)
    assert real_lengths(reads[0]) == lengths  # one row, no padding
    with torch.no_grad():  # position ids only: bounds read once (one row), shared by the layers
        got = model(**_without_count(packed, packed_attention.VARLEN_KEYS)).logits
    assert len(scans) == 1 and all(r is reads[-1] for r in reads[layers:])
    torch.testing.assert_close(got, want, atol=1e-6, rtol=0)
    padded = Collator(tok.pad_token_id)(feats[:4])  # a padding mask: plain sdpa
    with torch.no_grad():
        model(**_without_count(padded))
    assert len(reads) == 2 * layers


def test_varlen_kernel_gets_the_batch_bounds(setup, monkeypatch):
    """On CUDA in half precision sdpa_packed hands all rows to PyTorch's varlen_attn; faked here
    (no GPU) by a per-segment reference that checks what it receives."""
    from gemfactory.model import packed_attention

    model, tok, feats = setup
    model = copy.deepcopy(model)
    model.language_model.set_attn_implementation("sdpa_packed")
    batch = _without_count(PackingCollator(tok.pad_token_id, 300)(feats[:6]))
    assert batch["input_ids"].shape[0] > 1  # several rows, some with padding
    with torch.no_grad():
        want = model(**batch).logits
    calls = []

    def fake_varlen(q, k, v, cu_q, cu_k, max_q, max_k, *, scale=None, window_size=(-1, -1), enable_gqa=False):
        assert cu_q is batch["cu_seq_lens_q"] and cu_k is batch["cu_seq_lens_k"] and window_size == (-1, 0)
        assert q.shape[0] == batch["input_ids"].numel() and max_q == max_k == batch["max_length_q"]
        calls.append(1)
        bounds = cu_q.tolist()
        out = [torch.nn.functional.scaled_dot_product_attention(
            q[s:e].transpose(0, 1), k[s:e].transpose(0, 1), v[s:e].transpose(0, 1), is_causal=True, scale=scale,
            enable_gqa=enable_gqa).transpose(0, 1) for s, e in zip(bounds, bounds[1:])]
        return torch.cat(out)

    monkeypatch.setattr(packed_attention, "varlen_attn", fake_varlen)
    monkeypatch.setattr(packed_attention, "_use_varlen_kernel", lambda query, dropout: True)
    with torch.no_grad():
        got = model(**batch).logits
    assert len(calls) == model.config.text_config.num_hidden_layers
    real = batch["labels"] != -100
    torch.testing.assert_close(got[real], want[real], atol=1e-5, rtol=1e-5)


def test_segments_of_a_row():
    from gemfactory.model.packed_attention import segments

    assert segments([0, 1, 2, 0, 1, 0, 0, 0]) == [(0, 3), (3, 5), (5, 8)]  # trailing pads: one segment
    assert segments([0, 1, 0, 1, 2]) == [(0, 2), (2, 5)]
    assert segments([0, 1, 2, 3]) == [(0, 4)]


def test_flattened_rows_have_no_padding_and_equal_loss(setup):
    model, tok, feats = setup
    padded = Collator(tok.pad_token_id)(feats)
    budget = max(len(f["input_ids"]) for f in feats) * 2
    rows = PackingCollator(tok.pad_token_id, budget)(feats)
    flat = PackingCollator(tok.pad_token_id, budget, flatten=True)(feats)
    assert rows["input_ids"].shape[0] > 1 and flat["input_ids"].shape == (1, int(flat[REAL_TOKENS]))
    assert sorted(flat["cu_seq_lens_q"].diff().tolist()) == sorted(len(f["input_ids"]) for f in feats)
    loss_a, grads_a = _loss_and_grads(model, padded)
    loss_b, grads_b = _loss_and_grads(model, flat)
    assert abs(loss_a.item() - loss_b.item()) <= 1e-5
    for name in grads_a:
        torch.testing.assert_close(grads_b[name], grads_a[name], atol=1e-5, rtol=1e-4, msg=name)
