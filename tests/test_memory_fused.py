"""`gemfactory memory` with training.fused_loss: the logits term shrinks to one chunk plus the
gradients the chunked loss keeps, and the estimate still follows what autograd really keeps."""
import copy

import torch

from gemfactory.config import recipe_from_dict
from gemfactory.model.builder import build_model, recipe_template
from gemfactory.data.recipe_tokenizer import tokenizer_for_recipe
from gemfactory.train.memory import estimate_stage, meta_model
from gemfactory.train.tuning import apply_tuning

from conftest import TINY_MODEL
from test_memory import ARCHS, _saved_for_backward, _text_batch


def _recipe(tiny_data, fused: bool, batch: int = 2, seq: int = 256):
    model = copy.deepcopy(TINY_MODEL)
    model["llm"] = {"name": "vicuna", "tokenizer_vocab_size": 400, "arch": {**ARCHS["vicuna"], "vocab_size": 32000}}
    return recipe_from_dict({"model": model, "data": {"train": str(tiny_data / "train.json"), "max_length": seq},
                             "stages": [{"name": "s", "batch_size": batch}], "training": {"fused_loss": fused}})


def _estimate(recipe, tok):
    meta = meta_model(recipe, tok)
    apply_tuning(meta, recipe.stages[0])
    return estimate_stage(meta, recipe, recipe.stages[0])


def test_fused_loss_estimate_shrinks_and_tracks_autograd(tiny_data):
    kept = {}
    for fused in (False, True):
        recipe = _recipe(tiny_data, fused)
        tok = tokenizer_for_recipe(recipe, recipe_template(recipe))
        torch.manual_seed(0)
        model = build_model(recipe.model, tok)
        apply_tuning(model, recipe.stages[0])
        model.train()
        model.fused_loss = fused
        kept[fused] = _saved_for_backward(model, _text_batch(model, tok), False)
    est = _estimate(_recipe(tiny_data, True), tok)
    width, vocab, tokens = ARCHS["vicuna"]["hidden_size"], 32000, 2 * 256
    # kept for backward by the fused path: the activations, the hidden-state and lm_head gradients
    assert 0.75 <= kept[True] / (est.activations + tokens * width * 4 + vocab * width * 4) <= 1.3
    gone = tokens * vocab * 4 - tokens * width * 4 - vocab * width * 4  # fp32 logits, less the kept gradients
    assert 0.9 <= (kept[False] - kept[True]) / gone <= 1.1
    assert kept[True] <= est.activations + est.logits
    big = {fused: _estimate(_recipe(tiny_data, fused, batch=4, seq=2048), tok) for fused in (False, True)}
    assert big[True].logits < big[False].logits / 4
    assert big[True].activations == big[False].activations
