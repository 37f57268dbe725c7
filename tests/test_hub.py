"""Hub repo ids in recipes, against a huggingface_hub cache the tests lay out themselves
(models--ORG--NAME/{blobs, refs/REVISION, snapshots/COMMIT/...}, symlinks into blobs/, as
huggingface_hub's file_download writes it), always with HF_HUB_OFFLINE=1."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
import torch
import yaml

from conftest import tiny_recipe
from gemfactory import hub
from gemfactory.cli import main

RECIPES = Path(__file__).resolve().parent.parent / "recipes"
SEEDS = sorted(p for p in RECIPES.glob("*.yaml") if not p.name.startswith(("_", "tiny-")))
COMMIT_MAIN, COMMIT_V0 = "a" * 40, "b" * 40


def cache_repo(cache: Path, repo_id: str, files: dict[str, bytes], commit: str, refs=("main",)) -> Path:
    """One revision of ``repo_id`` in the hub cache: content-addressed blobs, a snapshot folder of
    relative symlinks to them, and refs/NAME holding the commit hash."""
    from huggingface_hub.file_download import repo_folder_name

    storage = cache / repo_folder_name(repo_id=repo_id, repo_type="model")
    snapshot = storage / "snapshots" / commit
    for name, data in files.items():
        blob = storage / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = snapshot / name
        link.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(os.path.relpath(blob, link.parent), link)
    for ref in refs:
        (storage / "refs").mkdir(parents=True, exist_ok=True)
        (storage / "refs" / ref).write_text(commit)
    return snapshot


def folder_files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def hub_cache(tmp_path_factory, tiny_data):
    """A cache holding the tiny test model's parts as three repos: tiny-org/llm (main: 2 layers;
    tag v0: 1 layer), tiny-org/clip, and tiny-org/encoders with a single ECG weight file."""
    from gemfactory.config import recipe_from_dict
    from gemfactory.model.builder import build_model
    from gemfactory.data.recipe_tokenizer import tokenizer_for_recipe

    torch.manual_seed(0)
    recipe = recipe_from_dict(tiny_recipe(tiny_data, tiny_data / "runs"))
    tok = tokenizer_for_recipe(recipe)
    model = build_model(recipe.model, tok)
    work, cache = tmp_path_factory.mktemp("saved"), tmp_path_factory.mktemp("hub-cache")
    model.language_model.save_pretrained(work / "llm")
    tok.save_pretrained(work / "llm")
    cache_repo(cache, "tiny-org/llm", folder_files(work / "llm"), COMMIT_MAIN)
    model.language_model.config.num_hidden_layers = 1
    model.language_model.config.save_pretrained(work / "llm-v0")
    tok.save_pretrained(work / "llm-v0")
    v0 = {**folder_files(work / "llm"), **folder_files(work / "llm-v0")}
    cache_repo(cache, "tiny-org/llm", v0, COMMIT_V0, refs=("v0",))
    model.language_model.config.num_hidden_layers = 2
    model.vision_tower.model.save_pretrained(work / "clip")
    cache_repo(cache, "tiny-org/clip", folder_files(work / "clip"), COMMIT_MAIN)
    torch.save(model.ecg_encoder.state_dict(), work / "ecg_coca.pt")
    cache_repo(cache, "tiny-org/encoders", {"ecg_coca.pt": (work / "ecg_coca.pt").read_bytes()}, COMMIT_MAIN)
    return cache, model


@pytest.fixture
def offline_cache(hub_cache, monkeypatch):
    cache, model = hub_cache
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache, model


def hub_recipe(tiny_data, tmp_path, llm="tiny-org/llm", **stage) -> dict:
    raw = tiny_recipe(tiny_data, tmp_path / "run", **stage)
    m = raw["model"]
    m["llm"] = {"name": "vicuna", "path": llm}
    m["vision"] = {"name": "clip", "path": "tiny-org/clip"}
    m["ecg"]["path"] = "tiny-org/encoders:ecg_coca.pt"
    return raw


def write(tmp_path, raw) -> str:
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(raw))
    return str(path)


def test_repo_ids_build_the_cached_weights_and_train(offline_cache, tiny_data, tmp_path):
    from gemfactory.config import recipe_from_dict
    from gemfactory.model.builder import build_model
    from gemfactory.data.recipe_tokenizer import tokenizer_for_recipe

    _, saved = offline_cache
    recipe = recipe_from_dict(hub_recipe(tiny_data, tmp_path))
    model = build_model(recipe.model, tokenizer_for_recipe(recipe))
    for ours, theirs in ((model.language_model, saved.language_model), (model.vision_tower, saved.vision_tower),
                         (model.ecg_encoder, saved.ecg_encoder)):
        mine, ref = ours.state_dict(), theirs.state_dict()
        assert mine.keys() == ref.keys() and all(torch.equal(mine[k], ref[k]) for k in ref)
    assert main(["-q", "train", write(tmp_path, hub_recipe(tiny_data, tmp_path, max_steps=2))]) == 0
    assert (tmp_path / "run" / "finetune" / "model" / "config.json").is_file()


def test_revision_picks_its_snapshot(offline_cache, tiny_data, tmp_path):
    from gemfactory.config import recipe_from_dict
    from gemfactory.model.builder import build_config
    from gemfactory.data.recipe_tokenizer import tokenizer_for_recipe

    cache, _ = offline_cache
    storage = cache / "models--tiny-org--llm" / "snapshots"
    assert hub.resolve("tiny-org/llm", "k") == str(storage / COMMIT_MAIN)
    assert hub.resolve("tiny-org/llm@v0", "k") == str(storage / COMMIT_V0)
    assert hub.resolve(f"tiny-org/llm@{COMMIT_V0}", "k") == str(storage / COMMIT_V0)
    assert hub.resolve("tiny-org/encoders@main:ecg_coca.pt", "k") == str(
        cache / "models--tiny-org--encoders" / "snapshots" / COMMIT_MAIN / "ecg_coca.pt")
    layers = {}
    for spec in ("tiny-org/llm", "tiny-org/llm@v0"):
        recipe = recipe_from_dict(hub_recipe(tiny_data, tmp_path, llm=spec))
        layers[spec] = build_config(recipe.model, tokenizer_for_recipe(recipe)).text_config.num_hidden_layers
    assert layers == {"tiny-org/llm": 2, "tiny-org/llm@v0": 1}


@pytest.mark.parametrize("key, value, what", [
    ("model.llm.path", "tiny-org/absent", "(revision main) has no tokenizer files"),
    ("model.llm.path", "tiny-org/llm@nope", "(revision nope) has no tokenizer files"),
    ("model.ecg.path", "tiny-org/encoders:absent.pt", "(revision main) has no file absent.pt"),
])
def test_missing_repo_offline_is_one_error_naming_it(offline_cache, tiny_data, tmp_path, capsys, key, value, what):
    cache, _ = offline_cache
    raw = hub_recipe(tiny_data, tmp_path)
    section, field = key.split(".")[1:]
    raw["model"][section][field] = value
    recipe = write(tmp_path, raw)
    assert main(["-q", "train", recipe]) == 2
    err = capsys.readouterr().err
    repo = value.split("@")[0].split(":")[0]
    assert err == (f"error: {key}: {value!r} is no local path, and Hugging Face repo {repo} {what} in the "
                   f"cache {cache} while HF_HUB_OFFLINE is set; download it with: gemfactory download {recipe}\n")


def test_a_path_that_is_neither_is_named(offline_cache, tiny_data, tmp_path, capsys):
    raw = hub_recipe(tiny_data, tmp_path)
    raw["model"]["vision"]["path"] = "./no/such/folder"
    assert main(["-q", "train", write(tmp_path, raw)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: model.vision.path: './no/such/folder' does not exist, and it is not a "
                          "Hugging Face repo id") and err.count("\n") == 1


def test_parse_ref():
    assert hub.parse_ref("org/name") == hub.HubRef("org/name")
    assert hub.parse_ref("org/name@v1.0:sub/f.pt") == hub.HubRef("org/name", "v1.0", "sub/f.pt")
    for not_a_ref in ("./org/name", "/abs/path", "a/b/c", "models/ecg-coca.pt", "name", "~/x/y"):
        assert hub.parse_ref(not_a_ref) is None, not_a_ref


@pytest.mark.parametrize("recipe", SEEDS, ids=lambda p: p.stem)
def test_seed_recipes_plan_with_an_empty_cache(recipe, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["-q", "memory", str(recipe), "--gpu-memory", "80", "--devices", "8"]) in (0, 1)
    out = capsys.readouterr().out
    from gemfactory.config import load_recipe

    n_stages = len(load_recipe(recipe).stages)
    assert out.count("== stage ") == out.count("  verdict    ") == n_stages
    assert main(["-q", "train", str(recipe), "--dry-run", "--devices", "8"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("weights not here (") and "no timed steps" in out
    assert "  llm " in out and "  vision " in out and "per device over 8 device(s)" in out
    assert not (tmp_path / "empty").exists() or not any((tmp_path / "empty").rglob("*.safetensors"))


# published sizes (billions), as the issue quotes them from the model cards / papers
PUBLISHED = {
    "lmsys--vicuna-7b-v1.5": 6.74, "microsoft--phi-2": 2.78, "meta-llama--Meta-Llama-3-8B": 8.03,
    "meta-llama--Meta-Llama-3-8B-Instruct": 8.03, "Qwen--Qwen2-1.5B": 1.54, "Qwen--Qwen2-1.5B-Instruct": 1.54,
    "openai--clip-vit-large-patch14-336": 0.30, "google--siglip-so400m-patch14-384": 0.43,
}


def count_shipped(folder: Path) -> int:
    """Parameters of the whole published model a shipped config describes (vision configs: the
    vision model, SigLIP's pooling head included), built on the meta device."""
    from transformers import (AutoConfig, AutoModelForCausalLM, CLIPVisionConfig, CLIPVisionModel,
                              SiglipVisionConfig, SiglipVisionModel)

    model_type = AutoConfig.from_pretrained(folder).model_type
    with torch.device("meta"):
        if model_type == "clip":
            model = CLIPVisionModel(CLIPVisionConfig.from_pretrained(folder))
        elif model_type == "siglip":
            model = SiglipVisionModel(SiglipVisionConfig.from_pretrained(folder))
        else:
            model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(folder))
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_shipped_configs_match_the_published_sizes(name):
    folder = hub.KNOWN_CONFIGS / name
    provenance = hub.known_provenance(folder)
    assert provenance["repo_id"] == name.replace("--", "/", 1) and provenance["licence"]
    billions = count_shipped(folder) / 1e9
    # the published figure is rounded to 0.01 B: half a unit of it, and 0.5 % where that is looser
    assert abs(billions - PUBLISHED[name]) <= max(0.005, 0.005 * PUBLISHED[name]), billions


def test_download_fetches_what_the_recipe_names(monkeypatch, tmp_path, capsys):
    """`gemfactory download` asks huggingface_hub for each repo (config patterns only with
    --config-only; no .bin copies of safetensors weights); the hub itself is replaced by a recorder."""
    import huggingface_hub

    calls = []

    def snapshot_download(repo_id, **kw):
        calls.append((repo_id, kw.get("revision"), kw.get("allow_patterns"), kw.get("ignore_patterns")))
        return str(tmp_path / repo_id)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    monkeypatch.setattr(huggingface_hub.HfApi, "list_repo_files",
                        lambda self, repo_id, revision=None: ["config.json", "model.safetensors", "pytorch_model.bin"])
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    recipe = str(RECIPES / "tinyllava-phi2-siglip.yaml")
    assert main(["-q", "download", recipe]) == 2
    assert "HF_HUB_OFFLINE is set to 1" in capsys.readouterr().err and not calls
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    assert main(["-q", "download", recipe, "--config-only", "model.llm.path=microsoft/phi-2@rev1"]) == 0
    assert [(c[0], c[1], c[2]) for c in calls] == [("microsoft/phi-2", "rev1", hub.CONFIG_PATTERNS),
                                                   ("google/siglip-so400m-patch14-384", None, hub.CONFIG_PATTERNS)]
    out = capsys.readouterr().out
    assert f"model.llm.path: microsoft/phi-2@rev1 -> {tmp_path / 'microsoft/phi-2'}" in out
    calls.clear()
    assert main(["-q", "download", recipe]) == 0
    assert all(c[2] is None and "*.bin" in c[3] for c in calls) and len(calls) == 2


def test_tiny_twins_read_the_shipped_configs(tmp_path, monkeypatch, capsys):
    """With nothing cached, a seed's tiny twin still keeps its real LLM's query:key-value head ratio
    (Llama-3: 32:8 -> 4:1) and its tower's depth checks (CLIP ViT-L: 24 layers)."""
    from gemfactory.config import load_recipe
    from gemfactory.train.twin import shrink

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert shrink(load_recipe(RECIPES / "gem-llama3-8b.yaml")).model.llm.arch["num_key_value_heads"] == 1
    assert shrink(load_recipe(RECIPES / "gem-vicuna7b.yaml")).model.llm.arch["num_key_value_heads"] == 4
    assert main(["-q", "recipe", "check", str(RECIPES / "llava-v1.5-7b.yaml"), "model.vision.options.select_layer=-30",
                 "--tiny", "--data", str(tmp_path / "synth")]) == 2
    assert "select_layer: -30 is out of range for a tower with 24 layers" in capsys.readouterr().err


def test_dry_run_without_a_tokenizer_estimates_lengths_and_says_so(tiny_data, tmp_path, monkeypatch, capsys):
    from gemfactory.data.dataset import load_items

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    items = load_items(str(tiny_data / "train.json"))
    assert main(["-q", "train", str(RECIPES / "gem-qwen2-1.5b.yaml"), "--dry-run",
                 f"data.train={tiny_data / 'train.json'}"]) == 0
    line = next(l for l in capsys.readouterr().out.splitlines() if l.strip().startswith("data"))
    assert line.startswith(f"  data       {len(items)} samples; tokens ESTIMATED without a tokenizer "
                           "(Qwen/Qwen2-1.5B-Instruct not cached)")
    # the longest sample: its characters / 4, plus 576 CLIP-336 patch tokens and 101 ECG tokens where present
    def guess(item):
        chars = sum(len(t["value"]) for t in item["conversations"])
        return -(-chars // 4) + 576 * bool(item.get("image")) + 101 * bool(item.get("ecg"))
    assert f"max {max(guess(i) for i in items)};" in line


def test_components_take_repo_ids_too(offline_cache):
    """The LLM family and the HF towers resolve a repo id themselves when used without the builder."""
    from gemfactory.registry import LLMS, VISION_TOWERS

    cache, saved = offline_cache
    family = LLMS.get("vicuna")()
    assert family.make_config({}, 10, "tiny-org/llm@v0").num_hidden_layers == 1
    assert "<image>" in family.load_tokenizer("tiny-org/llm").get_vocab()  # the saved tokenizer, placeholders included
    tower_cls = VISION_TOWERS.get("clip")
    arch, options = tower_cls.resolve({}, {}, "tiny-org/clip")
    assert arch["hidden_size"] == saved.vision_tower.model.config.hidden_size
    tower = tower_cls(arch, options)
    tower.load_pretrained("tiny-org/clip")
    assert all(torch.equal(a, b) for a, b in zip(tower.state_dict().values(), saved.vision_tower.state_dict().values()))
