"""The seed-system recipes in recipes/: they load, they carry the published hyper-parameters, and
the tiny twin of each builds and trains a step (``gemfactory recipe check RECIPE --tiny``)."""
from pathlib import Path

import pytest

from gemfactory.cli import main
from gemfactory.config import load_recipe

RECIPES_DIR = Path(__file__).resolve().parents[1] / "recipes"
ALL = sorted(RECIPES_DIR.glob("*.yaml"))
FRAGMENTS = [p for p in ALL if p.name.startswith("_")]  # only used through `base:`
RUNNABLE = [p for p in ALL if not p.name.startswith("_")]
SEEDS = [p for p in RUNNABLE if p.name != "tiny-gem.yaml"]
GEM = ["gem-vicuna7b.yaml", "gem-phi2.yaml", "gem-llama3-8b.yaml", "gem-qwen2-1.5b.yaml"]
DEVICES = 8  # the recipes' global batches are written for 8 GPUs


def recipe(name, *overrides):
    return load_recipe(RECIPES_DIR / name, list(overrides))


def global_batch(stage) -> int:
    return stage.batch_size * stage.gradient_accumulation_steps * DEVICES


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    """One synthetic dataset (24 records) shared by every tiny check of this module."""
    from gemfactory.data.synth import synthetic_data

    folder = tmp_path_factory.mktemp("tiny-check-data")
    with synthetic_data(folder):
        pass
    return folder


def check(capsys, name_or_path, *args):
    path = name_or_path if isinstance(name_or_path, Path) else RECIPES_DIR / name_or_path
    rc = main(["-q", "recipe", "check", str(path), *args])
    out, err = capsys.readouterr()
    return rc, out, err


# loading ----------------------------------------------------------------------------------------
def test_the_seed_recipes_are_all_there():
    names = {p.name for p in SEEDS}
    assert names >= {*GEM, "llava-v1.5-7b.yaml", "tinyllava-phi2-siglip.yaml", "vip-llava-7b.yaml",
                     "llava-graph.yaml"}


@pytest.mark.parametrize("path", RUNNABLE, ids=lambda p: p.name)
def test_every_recipe_loads(path):
    r = load_recipe(path)
    assert r.description and r.stages


def test_fragments_are_only_bases():
    import yaml

    bases = {yaml.safe_load(p.read_text()).get("base") for p in RUNNABLE}
    for fragment in FRAGMENTS:
        assert fragment.name in bases, f"{fragment.name} is a base fragment that no recipe uses"


# hyper-parameters ---------------------------------------------------------------------------------
LLM_REPOS = {"gem-vicuna7b.yaml": "lmsys/vicuna-7b-v1.5", "gem-phi2.yaml": "microsoft/phi-2",
             "gem-llama3-8b.yaml": "meta-llama/Meta-Llama-3-8B-Instruct",
             "gem-qwen2-1.5b.yaml": "Qwen/Qwen2-1.5B-Instruct"}


@pytest.mark.parametrize("name, llm, template", [
    ("gem-vicuna7b.yaml", "vicuna", "llava_v1"), ("gem-phi2.yaml", "phi", "phi"),
    ("gem-llama3-8b.yaml", "llama3", "llama3"), ("gem-qwen2-1.5b.yaml", "qwen2", "chatml"),
])
def test_gem_recipes(name, llm, template):
    from gemfactory.registry import ECG_ENCODERS

    r = recipe(name)
    m = r.model
    assert (m.llm.name, m.template, m.layout) == (llm, template, "gem")
    assert m.llm.path == LLM_REPOS[name]  # hub repo ids, resolved through the hub cache
    assert m.vision.name == "clip" and m.vision.path == "openai/clip-vit-large-patch14-336"
    assert m.vision.options["select_layer"] == -2 and m.vision.options["select_feature"] == "patch"
    assert m.ecg.name == "vit1d"
    arch, spec = ECG_ENCODERS.get("vit1d").resolve(m.ecg.arch, m.ecg.signal)
    assert (arch["width"], arch["layers"], arch["patch_size"]) == (768, 12, 50)
    assert (spec.n_leads, spec.n_samples, spec.fs) == (12, 5000, 500.0)
    assert {k: (c.name, c.via) for k, c in m.connectors.items()} == {"image": ("mlp2x_gelu", None), "ecg": ("linear", "image")}
    assert r.data.max_length == 4096
    (s,) = r.stages
    assert (s.lr, global_batch(s), s.epochs, s.scheduler, s.warmup_ratio) == (2e-5, 256, 1, "cosine", 0.03)
    assert r.training.deepspeed == "zero3" and r.training.bf16
    assert r.data.train.startswith("data/gem/")


def test_llava_v15_two_stages():
    r = recipe("llava-v1.5-7b.yaml")
    assert (r.model.llm.name, r.model.llm.path) == ("vicuna", "lmsys/vicuna-7b-v1.5")
    assert r.model.vision.path == "openai/clip-vit-large-patch14-336"
    assert r.model.vision.options["select_layer"] == -2
    assert r.model.connectors["image"].name == "mlp2x_gelu" and r.model.ecg is None
    pre, fine = r.stages
    assert (pre.name, pre.lr, global_batch(pre)) == ("pretrain", 1e-3, 256)
    assert pre.tune == {"llm": "frozen", "vision": "frozen", "connectors": "full"}
    assert (fine.name, fine.lr, global_batch(fine)) == ("finetune", 2e-5, 128)
    assert fine.tune == {"llm": "full", "vision": "frozen", "connectors": "full"}
    assert r.data.max_length == 2048 and pre.epochs == fine.epochs == 1
    assert pre.train.startswith("data/llava/") and r.data.train.startswith("data/llava/")


def test_tinyllava_phi2_siglip():
    r = recipe("tinyllava-phi2-siglip.yaml")
    m = r.model
    assert (m.llm.name, m.llm.path, m.template) == ("phi", "microsoft/phi-2", "phi")
    assert (m.vision.name, m.vision.path) == ("siglip", "google/siglip-so400m-patch14-384")
    assert m.vision.options["select_layer"] == -2 and m.connectors["image"].name == "mlp2x_gelu"
    pre, fine = r.stages
    assert (pre.lr, global_batch(pre), fine.lr, global_batch(fine)) == (1e-3, 256, 2e-5, 128)
    assert pre.tune["llm"] == "frozen" and fine.tune["llm"] == "full"
    assert r.data.max_length == 3072


def test_vip_llava_three_stages_and_five_layers():
    r = recipe("vip-llava-7b.yaml")
    assert r.model.vision.options["layers"] == [-2, -5, -8, -11, 6]  # as the seed's clip_4layers_336 reads
    assert r.model.connectors["image"].name == "layernorm_mlp2x_gelu"
    assert r.model.vision.path == "openai/clip-vit-large-patch14-336"
    assert [s.name for s in r.stages] == ["pretrain", "finetune", "finetune_gpt4v"]
    assert [(s.lr, global_batch(s)) for s in r.stages] == [(1e-3, 256), (2e-5, 128), (2e-5, 128)]
    assert r.stages[0].tune["llm"] == "frozen" and r.stages[1].tune["llm"] == r.stages[2].tune["llm"] == "full"
    assert len({s.train or r.data.train for s in r.stages}) == 3  # each stage its own data
    assert r.training.deepspeed == "zero2"


def test_llava_graph_one_finetune_stage():
    r = recipe("llava-graph.yaml")
    (s,) = r.stages
    assert (s.name, s.lr, global_batch(s), s.epochs, s.weight_decay) == ("finetune", 2e-5, 32, 3, 0.0)
    assert r.data.max_length == 2048 and r.data.train.startswith("data/llava-graph/")
    assert r.model.connectors["image"].name == "linear" and r.model.vision.options["select_layer"] == -2


# the tiny twin --------------------------------------------------------------------------------------
def test_shrink_keeps_choices_and_drops_sizes(synth):
    from gemfactory.train.twin import shrink

    full = recipe("gem-llama3-8b.yaml")
    tiny = shrink(full, synth)
    m = tiny.model
    assert (m.llm.name, m.template, m.layout) == ("llama3", "llama3", "gem")
    assert m.llm.path is m.llm.tokenizer is m.vision.path is m.ecg.path is None
    assert m.vision.options == full.model.vision.options and m.vision.arch["hidden_size"] == 64
    assert m.ecg.arch["tiny"] and m.ecg.signal["n_samples"] == 1000  # the 5000-sample spec shrinks
    assert {k: c.name for k, c in m.connectors.items()} == {k: c.name for k, c in full.model.connectors.items()}
    assert [(s.name, s.tune, s.lr) for s in tiny.stages] == [(s.name, s.tune, s.lr) for s in full.stages]
    assert tiny.training.deepspeed is None and tiny.data.train.startswith(str(synth))
    assert full.model.llm.path == "meta-llama/Meta-Llama-3-8B-Instruct"  # the recipe itself is untouched
    vip = shrink(recipe("vip-llava-7b.yaml"), synth)
    assert vip.model.vision.arch["num_hidden_layers"] == 11  # -11 still names a block output


def test_gem_layout_items():
    from gemfactory.data.synth import gem_layout_items

    def item(text, **kw):
        return {"id": "x", **kw, "conversations": [{"from": "human", "value": text}, {"from": "gpt", "value": "a"}]}

    both, ecg, img = gem_layout_items([item("<ecg>\n<image>\nQ?", ecg="r", image="i.png"),
                                       item("<ecg>\nQ?", ecg="r"), item("<image>\nQ?", image="i.png")])
    assert [i["conversations"][0]["value"] for i in (both, ecg, img)] == ["<image>\nQ?"] * 3


@pytest.mark.parametrize("path", [*SEEDS, RECIPES_DIR / "tiny-gem.yaml"], ids=lambda p: p.name)
def test_recipe_check_tiny(path, synth, capsys):
    rc, out, err = check(capsys, path, "--tiny", "--data", str(synth))
    assert rc == 0, err
    lines = [line.strip() for line in out.splitlines()]
    assert lines[-1] == "ok"
    r = load_recipe(path)
    for comp in ("llm", "vision", "ecg", "connectors"):
        assert sum(line.startswith(f"{comp}:") for line in lines) == 1, out
    assert [line.split(":")[0] for line in lines if line.startswith("stage ")] == [f"stage {s.name}" for s in r.stages]
    assert f"layout {r.model.layout}" in out
    kinds = {line.split("(")[1].split(")")[0] for line in lines if line.startswith("stage ")}
    if r.model.ecg is not None:  # ECG recipes train on every kind of synthetic sample
        assert {frozenset(k.split(", ")) for k in kinds} == {frozenset({"image", "ecg", "ecg+image", "text"})}
    else:  # the ECG samples do not fit an image-only model and are left out
        assert {frozenset(k.split(", ")) for k in kinds} == {frozenset({"image", "text"})}
    if path.name == "vip-llava-7b.yaml":
        assert "vision: clip, 11 layers" in out and "layers [-2, -5, -8, -11, 6]" in out and "x 320" in out


def test_out_of_range_select_layer_fails_the_tiny_check(synth, capsys):
    rc, out, err = check(capsys, "llava-v1.5-7b.yaml", "model.vision.options.select_layer=99",
                         "--tiny", "--data", str(synth))
    assert rc == 2 and "ok" not in out.split()
    assert "model.vision.options.select_layer" in err and "99" in err


def test_recipe_check_lists_missing_paths(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))  # an empty hub cache
    rc, out, err = check(capsys, "gem-vicuna7b.yaml")
    assert rc == 2 and out.splitlines()[-1] != "ok"
    # the config is still built: the uncached hub repos' configs are the ones gemfactory ships
    assert "config ok (llm vicuna" in out
    missing = [line for line in err.splitlines() if line.startswith("missing ")]
    keys = [line.split(":")[0].removeprefix("missing ") for line in missing]
    assert keys[:3] == ["model.llm.path", "model.vision.path", "model.ecg.path"]
    assert "data.train" in keys and len(keys) == len(set(keys))
    assert (f"missing model.llm.path: lmsys/vicuna-7b-v1.5 (no local path, and no hub repo in the cache; "
            f"gemfactory download {RECIPES_DIR / 'gem-vicuna7b.yaml'})") in err
    assert "missing model.ecg.path: models/ecg-coca.pt" in err
    assert "--tiny" in err.splitlines()[-1]


@pytest.fixture(scope="module")
def local_models(tmp_path_factory, synth):
    """Stand-ins for downloaded weights: a Llama folder with 8 query / 2 key-value heads and its
    tokenizer, a 6-layer CLIP vision config and an ECG weight file, as overrides of gem-vicuna7b."""
    from transformers import CLIPVisionConfig, LlamaConfig

    from gemfactory.registry import LLMS

    root = tmp_path_factory.mktemp("models")
    tok = LLMS.get("vicuna")().train_tokenizer(["USER: ASSISTANT: heart rate ECG"] * 4, 300)
    tok.save_pretrained(root / "llm")
    LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=1, num_attention_heads=8,
                num_key_value_heads=2, vocab_size=len(tok) + 2,
                rope_parameters={"rope_type": "default", "rope_theta": 123456.0}).save_pretrained(root / "llm")
    CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=6, num_attention_heads=2,
                     image_size=32, patch_size=16).save_pretrained(root / "clip")
    (root / "ecg.pt").write_bytes(b"")
    return [f"model.llm.path={root / 'llm'}", f"model.vision.path={root / 'clip'}",
            f"model.ecg.path={root / 'ecg.pt'}", f"data.train={synth / 'train.json'}",
            f"data.image_folder={synth / 'images'}", f"data.ecg_folder={synth / 'ecg'}"]


def test_recipe_check_builds_the_config_when_paths_exist(local_models, capsys):
    rc, out, err = check(capsys, "gem-vicuna7b.yaml", *local_models)
    assert rc == 0, err
    assert "config ok (llm vicuna, template llava_v1, vision clip, ecg vit1d)" in out and out.split()[-1] == "ok"


def test_tiny_check_reads_local_configs(local_models, synth, capsys):
    from gemfactory.train.twin import shrink

    tiny = shrink(recipe("gem-vicuna7b.yaml", *local_models), synth)
    assert tiny.model.llm.arch["num_key_value_heads"] == 1  # 8:2 heads, as 4:1
    assert tiny.model.llm.arch["rope_parameters"]["rope_theta"] == 123456.0
    rc, out, err = check(capsys, "gem-vicuna7b.yaml", *local_models, "--tiny", "--data", str(synth))
    assert rc == 0, err
    assert "4 heads / 1 kv" in out
    # the real tower has 6 layers: -9 is out of range there, so it is here too
    rc, out, err = check(capsys, "gem-vicuna7b.yaml", *local_models, "model.vision.options.select_layer=-9",
                         "--tiny", "--data", str(synth))
    assert rc == 2 and "model.vision.options.select_layer: -9 is out of range for a tower with 6 layers" in err


@pytest.mark.parametrize("name, overrides, rc, expected", [
    # open_clip / timm towers shrink to a tiny model of the same kind, deep enough for the layers read
    ("llava-v1.5-7b.yaml", ["model.vision={name: open_clip, arch: {model_name: ViT-L-14-336, quick_gelu: true}, "
                            "options: {layers: [-2, -5, -8, -11]}}"], 0, "vision: open_clip ViT-L-14-336, 11 layers"),
    ("llava-v1.5-7b.yaml", ["model.vision={name: timm, arch: {model_name: vit_large_patch14_clip_336}, "
                            "options: {select_layer: -2}}"], 0, "vision: timm vit_large_patch14_clip_336, 2 layers"),
    # the named configs know the real depth (24 blocks), so out-of-range layers fail as they would at full size
    ("llava-v1.5-7b.yaml", ["model.vision={name: open_clip, arch: {model_name: ViT-L-14-336}, "
                            "options: {select_layer: -30}}"], 2, "select_layer: -30 is out of range for a tower with 24"),
    ("llava-v1.5-7b.yaml", ["model.vision={name: timm, arch: {model_name: vit_large_patch14_clip_336}, "
                            "options: {select_layer: -30}}"], 2, "select_layer: -30 is out of range for timm model"),
    ("llava-v1.5-7b.yaml", ["model.connectors.image={name: resampler, options: {num_queries: 64, heads: 16}}"],
     0, "image resampler"),
    # the ECG encoder keeps its choices (norm) and a non-default signal spec
    ("gem-qwen2-1.5b.yaml", ["model.ecg={name: resnet1d, path: models/r.pt, arch: {norm: group}}"], 0, "ecg: resnet1d"),
    ("gem-qwen2-1.5b.yaml", ["model.ecg.signal={fs: 250, n_samples: 2500}"], 0, "2500 samples at 250 Hz"),
    # identity connectors: the tiny encoders take the LLM width
    ("gem-qwen2-1.5b.yaml", ["model.connectors.ecg={name: identity}", "model.connectors.image={name: identity}"],
     0, "image identity 64->64, ecg identity 64->64"),
])
def test_tiny_check_of_other_components(name, overrides, rc, expected, synth, capsys):
    got, out, err = check(capsys, name, *overrides, "--tiny", "--data", str(synth))
    assert got == rc, err
    assert expected in (out if rc == 0 else err)


def test_llava_pretrain_stage_uses_plain_and_its_own_images(synth, capsys):
    r = recipe("llava-v1.5-7b.yaml")
    assert r.stages[0].template == "plain" and r.stages[1].template is None
    assert r.stages[0].image_folder == "data/llava/llava_pretrain/images"
    rc, out, err = check(capsys, "llava-v1.5-7b.yaml", "--tiny", "--data", str(synth))
    assert rc == 0, err
    assert "stage pretrain: tune llm frozen, vision frozen, connectors full, template plain;" in out


def test_connector_weights_load_from_a_llava_projector_file(tmp_path):
    import torch

    from gemfactory.errors import CheckpointError
    from gemfactory.model.builder import load_connector
    from gemfactory.registry import CONNECTORS

    conn = CONNECTORS.get("mlp2x_gelu")(8, 4)
    torch.save({"model.mm_projector.0.weight": torch.ones(4, 8), "model.mm_projector.0.bias": torch.zeros(4),
                "model.mm_projector.2.weight": torch.ones(4, 4), "model.mm_projector.2.bias": torch.zeros(4)},
               tmp_path / "mm_projector.bin")
    load_connector(conn, str(tmp_path / "mm_projector.bin"), "model.connectors.image.path")
    assert torch.equal(conn[0].weight, torch.ones(4, 8))
    with pytest.raises(CheckpointError, match="model.connectors.image.path"):
        load_connector(CONNECTORS.get("linear")(8, 4), str(tmp_path / "mm_projector.bin"), "model.connectors.image.path")


def test_overrides_may_follow_the_options(synth, capsys):
    rc, out, err = check(capsys, "llava-v1.5-7b.yaml", "--tiny", "--data", str(synth), "model.vision.options.select_layer=99")
    assert rc == 2 and "model.vision.options.select_layer" in err
