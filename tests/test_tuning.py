"""Tune types change exactly the parameters they should; LoRA stages save merged + adapter; export."""
import copy
import json

import pytest
import torch
import yaml

from conftest import tiny_recipe
from gemfactory.config import StageConfig, recipe_from_dict
from gemfactory.data.dataset import Collator, GemDataset
from gemfactory.data.processor import Processor
from gemfactory.errors import ConfigError
from gemfactory.tune.adapters import finish_tuning, lora_layers
from gemfactory.train.tuning import apply_tuning


@pytest.fixture(scope="module")
def batch(tiny_built):
    recipe, tok, model, template = tiny_built
    proc = Processor.from_model(model, tok, template, 256)
    ds = GemDataset(recipe.data.train, proc, recipe.data.image_folder, recipe.data.ecg_folder)
    kinds = {}
    for i, item in enumerate(ds.items):
        kinds.setdefault((bool(item.get("image")), bool(item.get("ecg"))), i)
    return Collator(tok.pad_token_id)([ds[i] for i in kinds.values()])


def snapshot(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def run_steps(model, batch, n=3):
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=1e-2)
    model.train()
    for _ in range(n):
        model(**batch).loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=False)
    model.eval()


def changed(before, model):
    after = dict(model.named_parameters())
    assert set(after) == set(before), "the parameter names changed"
    return {n for n, p in after.items() if not torch.equal(p, before[n])}


FROZEN_REST = {"vision": "frozen", "ecg": "frozen", "connectors": "frozen"}


@pytest.mark.parametrize("tune, partial, expected", [
    ({"llm": "full", **FROZEN_REST}, {}, lambda n: n.startswith("language_model.")),
    ({**FROZEN_REST, "llm": "frozen", "connectors": "full"}, {}, lambda n: n.startswith("connectors.")),
    ({**FROZEN_REST, "llm": "frozen", "ecg": "full"}, {}, lambda n: n.startswith("ecg_encoder.")),
    ({"llm": "partial", **FROZEN_REST}, {"llm": {"last_n_layers": 1}},
     lambda n: n.startswith("language_model.model.layers.1.")),
    ({"llm": "partial", **FROZEN_REST}, {"llm": {"modules": ["lm_head", "model.norm"]}},
     lambda n: n in ("language_model.lm_head.weight", "language_model.model.norm.weight")),
], ids=["full-llm", "full-connectors", "full-ecg", "partial-last-layer", "partial-modules"])
def test_tune_type_trains_exactly_its_parameters(tiny_built, batch, tune, partial, expected):
    model = copy.deepcopy(tiny_built[2])
    apply_tuning(model, StageConfig(name="s", tune=tune, partial=partial))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and trainable == {n for n, _ in model.named_parameters() if expected(n)}
    before = snapshot(model)
    run_steps(model, batch)
    moved = changed(before, model)
    assert moved <= trainable, sorted(moved - trainable)[:5]  # everything else is bit-identical
    assert len(moved) >= 0.9 * len(trainable), sorted(trainable - moved)[:5]


@pytest.mark.parametrize("component, prefix, targets", [
    ("llm", "language_model.", ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")),
    ("connectors", "connectors.", None),
])
def test_lora_trains_adapters_only_and_merges_into_the_targets(tiny_built, batch, component, prefix, targets):
    model = copy.deepcopy(tiny_built[2])
    tune = {"llm": "frozen", **FROZEN_REST, component: "lora"}
    apply_tuning(model, StageConfig(name="s", tune=tune, lora={"r": 4, "alpha": 8, "dropout": 0.0}))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith(prefix) and ".lora_" in n for n in trainable)
    assert type(model.language_model).__name__ == "LlamaForCausalLM"  # structure kept, LoRA inside
    before = snapshot(model)
    run_steps(model, batch)
    assert changed(before, model) <= trainable
    base_before = {n.replace(".base_layer", ""): p for n, p in before.items() if ".lora_" not in n}
    with torch.no_grad():
        logits = model(**batch).logits
    adapter = finish_tuning(model)
    assert not lora_layers(model) and not hasattr(model, "peft_config")
    assert set(dict(model.named_parameters())) == set(base_before)
    with torch.no_grad():
        assert torch.allclose(model(**batch).logits, logits, atol=1e-5)
    merged = changed(base_before, model)
    if targets:
        expect = {n for n in base_before if n.startswith(prefix) and n.split(".")[-2] in targets}
        assert len(expect) == 2 * len(targets)  # two decoder layers
    else:  # every nn.Linear weight of the connectors (the image MLP's two layers and the ECG linear)
        expect = {"connectors.image.0.weight", "connectors.image.2.weight", "connectors.ecg.weight"}
    assert merged == expect
    assert adapter.components == [component] and all(".lora_" in k for k in adapter.state_dict)


def test_lora_and_partial_settings_are_validated(tiny_built, tiny_data, tmp_path):
    raw = tiny_recipe(tiny_data, tmp_path, tune={"llm": "lora"}, lora={"r": 4, "alhpa": 8})
    with pytest.raises(ConfigError, match=r"stages\.finetune\.lora\.alhpa: unknown key \(did you mean 'alpha'\?\)"):
        recipe_from_dict(raw)
    model = copy.deepcopy(tiny_built[2])
    with pytest.raises(ConfigError, match=r"stages\.s\.lora\.dropuot: unknown key \(did you mean 'dropout'\?\)"):
        apply_tuning(model, StageConfig(name="s", tune={"llm": "lora"}, lora={"dropuot": 0.1}))
    with pytest.raises(ConfigError, match=r"stages\.finetune\.partial\.llm: required when"):
        recipe_from_dict(tiny_recipe(tiny_data, tmp_path, tune={"llm": "partial"}))
    with pytest.raises(ConfigError, match=r"stages\.s\.partial\.llm\.modules\[0\]: 'lm_haed' is neither"):
        apply_tuning(model, StageConfig(name="s", tune={"llm": "partial"}, partial={"llm": {"modules": ["lm_haed"]}}))


def test_qlora_without_bitsandbytes_fails_before_training(tiny_data, tmp_path, capsys):
    from gemfactory.cli import main
    from gemfactory.tune.qlora import qlora_available

    if qlora_available() is None:
        pytest.skip("bitsandbytes and CUDA are present here")
    recipe = tmp_path / "q.yaml"
    recipe.write_text(yaml.safe_dump(tiny_recipe(tiny_data, tmp_path / "run", tune={"llm": "qlora"})))
    assert main(["-q", "train", str(recipe)]) == 2
    err = capsys.readouterr().err
    assert "error: stages.finetune.tune.llm: qlora needs bitsandbytes and a CUDA GPU (" in err
    assert not (tmp_path / "run").exists(), "nothing may be built or written before the check"


def test_lora_stage_saves_merged_checkpoint_and_adapter_and_exports(tiny_data, tmp_path, batch, capsys):
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    from gemfactory.cli import main

    run = tmp_path / "run"
    recipe = tmp_path / "lora.yaml"
    recipe.write_text(yaml.safe_dump(tiny_recipe(
        tiny_data, run, tune={"llm": "lora", "ecg": "frozen", "connectors": "full"},
        lora={"r": 4, "alpha": 8, "dropout": 0.0})))
    assert main(["-q", "train", str(recipe), "stages.finetune.max_steps=3"]) == 0
    ckpt = run / "finetune" / "model"
    adapter = ckpt / "adapter"
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        assert (ckpt / name).is_file(), name
    assert (adapter / "adapter_config.json").is_file() and (adapter / "adapter_model.safetensors").is_file()
    assert json.loads((adapter / "gemfactory_adapter.json").read_text())["merged_into_base"] is True
    weights = load_file(str(ckpt / "model.safetensors"))
    assert not any("lora_" in k or "base_layer" in k for k in weights), "the checkpoint is a plain model"

    out = tmp_path / "export"
    assert main(["-q", "export", str(run), str(out), "--merge"]) == 0  # already merged: not applied twice
    assert "already merged" in capsys.readouterr().out
    trained = AutoModelForCausalLM.from_pretrained(ckpt).eval()
    exported = AutoModelForCausalLM.from_pretrained(out).eval()
    assert exported.config.template == "vicuna_v1" and exported.config.ecg["signal"]["fs"] == 100.0
    assert (out / "tokenizer.json").is_file() and not list(tmp_path.glob(".export.tmp-*"))
    with torch.no_grad():
        assert torch.allclose(trained(**batch).logits, exported(**batch).logits, atol=1e-5, rtol=0)

    # the shipped adapter holds what was merged: applying it once more adds B @ A * alpha / r again
    twice = tmp_path / "twice"
    assert main(["-q", "export", str(ckpt), str(twice), "--merge", "--adapter", str(adapter)]) == 0
    again = AutoModelForCausalLM.from_pretrained(twice)
    sd = load_file(str(adapter / "adapter_model.safetensors"))
    key = "language_model.model.layers.0.self_attn.q_proj"
    delta = sd[f"{key}.lora_B.weight"] @ sd[f"{key}.lora_A.weight"] * (8 / 4)
    assert delta.abs().max() > 0, "three steps moved the adapter"
    w_once = trained.get_parameter(f"{key}.weight")
    assert torch.allclose(again.get_parameter(f"{key}.weight") - w_once, delta, atol=1e-6)


@pytest.mark.parametrize("change, message", [
    ({"tune": {"llm": "lora"}}, "error: stages.finetune.tune.llm: lora cannot be merged into weights that ZeRO-3 "
                                "shards across devices; use training.deepspeed=zero2 (or full/partial tuning)"),
    ({"tune": {"connectors": "full"}, "identity": True},
     "error: stages.finetune.tune.connectors: full, but the connectors component has no parameters to train; "
     "ZeRO-3 has nothing to shard there: set it to frozen"),
    ({"tune": {}, "deepspeed": "zero3_offload"},
     "error: training.deepspeed: zero3_offload offloads offload_param and offload_optimizer from the GPU, but no "
     "CUDA GPU is visible here; use zero2 or zero3 on a CPU-only machine"),
])
def test_impossible_zero3_recipes_fail_before_training(tiny_data, tmp_path, change, message):
    import torch

    if torch.cuda.is_available() and "deepspeed" in change:
        pytest.skip("a GPU is visible: offloading is possible here")
    import os
    import subprocess
    import sys

    raw = tiny_recipe(tiny_data, tmp_path / "run", tune=change["tune"])
    if change.get("identity"):  # widths agree (32), so both connectors can be parameter-free
        raw["model"]["connectors"] = {"image": {"name": "identity"}, "ecg": {"name": "identity"}}
    raw["training"]["deepspeed"] = change.get("deepspeed", "zero3")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(raw))
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT")}
    proc = subprocess.run([sys.executable, "-m", "gemfactory.cli", "-q", "train", str(recipe)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == message
    assert not list((tmp_path / "run").rglob("*.safetensors"))
