"""`gemfactory memory`: the estimate follows the model's real parameters and the tensors autograd
really keeps for backward; the verdict and exit code follow --gpu-memory."""
import copy
import subprocess
import sys

import pytest
import torch

from gemfactory.cli import main
from gemfactory.config import recipe_from_dict
from gemfactory.model.builder import build_model, recipe_template
from gemfactory.data.recipe_tokenizer import tokenizer_for_recipe
from gemfactory.train.memory import estimate_stage, meta_model
from gemfactory.train.tuning import apply_tuning

from conftest import TINY_MODEL

ARCHS = {
    "vicuna": {"hidden_size": 256, "intermediate_size": 688, "num_hidden_layers": 3, "num_attention_heads": 4,
               "num_key_value_heads": 2},
    "phi": {"hidden_size": 256, "intermediate_size": 1024, "num_hidden_layers": 3, "num_attention_heads": 4,
            "num_key_value_heads": 4},
}


def _recipe(tiny_data, family="vicuna", attn="sdpa", bf16=False, **stage):
    model = copy.deepcopy(TINY_MODEL)
    model["llm"] = {"name": family, "tokenizer_vocab_size": 400, "arch": ARCHS[family], "attn_implementation": attn}
    return recipe_from_dict({"model": model, "data": {"train": str(tiny_data / "train.json"), "max_length": 256},
                             "stages": [{"name": "s", "batch_size": 2, **stage}], "training": {"bf16": bf16}})


def _saved_for_backward(model, batch, bf16: bool) -> int:
    """Bytes of the (non-parameter) tensors autograd keeps for backward during one forward."""
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    kept = {}

    def pack(t):
        storage = t.untyped_storage()
        if storage.data_ptr() not in params:
            kept[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), torch.autocast("cpu", torch.bfloat16,
                                                                                      enabled=bf16):
        model(**batch)
    return sum(kept.values())


def _text_batch(model, tok, seq=256):
    specials = {model.config.image_token_id, model.config.ecg_token_id}
    plain = next(t for t in range(5, len(tok)) if t not in specials)
    ids = torch.randint(5, len(tok) - 2, (2, seq), generator=torch.Generator().manual_seed(0))
    ids[torch.isin(ids, torch.tensor(sorted(specials)))] = plain
    return {"input_ids": ids, "labels": ids, "attention_mask": torch.ones_like(ids)}


@pytest.mark.parametrize("family, attn, bf16", [("vicuna", "sdpa", False), ("vicuna", "eager", False),
                                                 ("phi", "sdpa", False), ("vicuna", "sdpa", True)])
def test_activation_estimate_tracks_what_autograd_keeps(tiny_data, family, attn, bf16):
    recipe = _recipe(tiny_data, family, attn, bf16)
    stage = recipe.stages[0]
    tok = tokenizer_for_recipe(recipe, recipe_template(recipe))
    torch.manual_seed(0)
    model = build_model(recipe.model, tok)
    apply_tuning(model, stage)
    model.train()
    measured = _saved_for_backward(model, _text_batch(model, tok), bf16)
    meta = meta_model(recipe, tok)
    apply_tuning(meta, stage)
    est = estimate_stage(meta, recipe, stage)
    assert 0.75 <= measured / (est.activations + est.logits) <= 1.3, (measured, est)


def test_parameter_memory_is_exact_for_full_and_lora(tiny_data):
    for stage in ({}, {"tune": {"llm": "lora"}, "lora": {"r": 8}}):
        recipe = _recipe(tiny_data, **stage)
        tok = tokenizer_for_recipe(recipe, recipe_template(recipe))
        model = build_model(recipe.model, tok)
        apply_tuning(model, recipe.stages[0])
        meta = meta_model(recipe, tok)
        apply_tuning(meta, recipe.stages[0])
        est = estimate_stage(meta, recipe, recipe.stages[0])
        trainable = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
        assert est.weights == sum(p.numel() * p.element_size() for p in model.parameters())
        assert est.gradients == trainable and est.optimizer == 2 * trainable
        assert all(p.device.type == "meta" for p in meta.parameters())


def test_zero_splits_states_over_devices(tiny_data):
    recipe = _recipe(tiny_data)
    tok = tokenizer_for_recipe(recipe, recipe_template(recipe))
    meta = meta_model(recipe, tok)
    apply_tuning(meta, recipe.stages[0])
    one, four2, four3 = (estimate_stage(meta, recipe, recipe.stages[0], d, z) for d, z in ((1, 2), (4, 2), (4, 3)))
    assert four2.optimizer == one.optimizer / 4 and four2.weights == one.weights
    assert four3.weights == one.weights / 4
    checkpointed = recipe_from_dict({**recipe.to_dict(), "training": {"gradient_checkpointing": True}})
    assert estimate_stage(meta, checkpointed, recipe.stages[0], 1, 2).activations < one.activations / 2


def test_memory_command_verdict_and_exit_code(tiny_data, tmp_path, capsys):
    import yaml

    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(_recipe(tiny_data).to_dict()))
    assert main(["-q", "memory", str(path), "--gpu-memory", "80"]) == 0
    out = capsys.readouterr().out
    assert "== stage s: batch 2 x 256 tokens" in out and "fits in 80 GiB" in out
    assert main(["-q", "memory", str(path), "--gpu-memory", "0.5"]) == 1
    assert "does NOT fit in 0.5 GiB" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_:
        main(["-q", "memory", str(path), "--gpu-memory", "-3"])
    assert exit_.value.code == 2 and "--gpu-memory: expected a positive float, got '-3'" in capsys.readouterr().err


def test_phi2_lora_estimate_without_any_weights_on_disk(tiny_data, tmp_path):
    """The issue's example: Phi-2 + SigLIP-so400m + ECG-CoCa-size 1D ViT, LoRA, on 24 GB, from
    architectures alone (built on the meta device: seconds, no memory)."""
    import yaml

    raw = {"model": {
        "llm": {"name": "phi", "dtype": "bfloat16", "tokenizer_vocab_size": 400, "arch": {
            "hidden_size": 2560, "intermediate_size": 10240, "num_hidden_layers": 32, "num_attention_heads": 32,
            "num_key_value_heads": 32, "vocab_size": 51200}},
        "vision": {"name": "siglip", "arch": {"hidden_size": 1152, "intermediate_size": 4304,
                                              "num_hidden_layers": 27, "num_attention_heads": 16,
                                              "image_size": 384, "patch_size": 14}},
        "ecg": {"name": "vit1d", "arch": {"width": 768, "layers": 12, "heads": 12, "patch_size": 50}},
        "connectors": {"image": {"name": "mlp2x_gelu"}, "ecg": {"name": "mlp2x_gelu"}}, "template": "phi"},
        "data": {"train": str(tiny_data / "train.json"), "max_length": 2048},
        "stages": [{"name": "finetune", "batch_size": 4, "tune": {"llm": "lora"}, "lora": {"r": 128, "alpha": 256}}],
        "training": {"bf16": True, "gradient_checkpointing": True}}
    path = tmp_path / "phi2.yaml"
    path.write_text(yaml.safe_dump(raw))
    proc = subprocess.run([sys.executable, "-m", "gemfactory.cli", "-q", "memory", str(path), "--gpu-memory", "24"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
    assert "fits in 24 GiB" in proc.stdout and "weights 6.4" in proc.stdout  # ~3.4 B parameters in bf16
    no_ckpt = subprocess.run([sys.executable, "-m", "gemfactory.cli", "-q", "memory", str(path), "--gpu-memory", "24",
                              "training.gradient_checkpointing=false"], capture_output=True, text=True, timeout=300)
    assert no_ckpt.returncode == 1 and "does NOT fit in 24 GiB" in no_ckpt.stdout


def test_attention_kernel_is_flash_attention_only_where_it_can_run(monkeypatch):
    import importlib.util

    from gemfactory.model.builder import attention_kernel

    assert attention_kernel("eager", "bfloat16") == "eager"
    assert attention_kernel(None, "bfloat16") == "sdpa"  # here: no CUDA GPU
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: object() if name == "flash_attn" else real_find_spec(name, *a))
    assert attention_kernel("auto", "bfloat16") == "flash_attention_2"
    assert attention_kernel(None, "float16") == "flash_attention_2"
    assert attention_kernel(None, "float32") == "sdpa"  # flash-attention runs in half precision only
