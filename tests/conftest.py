import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")


TEST_DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real records and images that ship with the tests (100, s0010_re, JS00001, ...; see data/README.md)."""
    return TEST_DATA


TINY_MODEL = {
    "llm": {"name": "vicuna", "tokenizer_vocab_size": 400,
            "arch": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                     "num_attention_heads": 2, "num_key_value_heads": 2}},
    "vision": {"name": "clip", "arch": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                                        "num_attention_heads": 2, "image_size": 32, "patch_size": 16}},
    "ecg": {"name": "vit1d", "arch": {"tiny": True, "width": 32, "layers": 1, "heads": 2}},
    "connectors": {"image": {"name": "mlp2x_gelu"}, "ecg": {"name": "linear"}},
    "template": "vicuna_v1",
}


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """A small synthetic dataset (WFDB records, images, train/test JSON) made once per session."""
    from gemfactory.data.synth import synthesize

    out = tmp_path_factory.mktemp("tiny-data")
    synthesize(out, n_train=36, n_test=12, seed=0)
    return out


def tiny_recipe(data: Path, out: Path, **stage) -> dict:
    import copy

    return {
        "model": copy.deepcopy(TINY_MODEL),
        "data": {"train": str(data / "train.json"), "image_folder": str(data / "images"),
                 "ecg_folder": str(data / "ecg"), "max_length": 256},
        "stages": [{"name": "finetune", "epochs": 1, "batch_size": 8, "lr": 1e-3, **stage}],
        "training": {"output_dir": str(out), "seed": 0, "logging_steps": 1},
    }


@pytest.fixture(scope="session")
def tiny_built(tiny_data):
    """(recipe, tokenizer, model, template) of the tiny test model, built once."""
    from gemfactory.config import recipe_from_dict
    from gemfactory.model.builder import build_model, build_tokenizer
    from gemfactory.registry import TEMPLATES
    from gemfactory.data.recipe_tokenizer import tokenizer_texts as _tokenizer_texts

    import torch

    torch.manual_seed(0)
    recipe = recipe_from_dict(tiny_recipe(tiny_data, tiny_data / "runs"))
    template = TEMPLATES.get("vicuna_v1")()
    tok = build_tokenizer(recipe.model, _tokenizer_texts(recipe, template))
    model = build_model(recipe.model, tok)
    return recipe, tok, model, template


@pytest.fixture(scope="session")
def two_step_run(tiny_data, tmp_path_factory) -> Path:
    """A run folder of the tiny recipe trained for 2 steps through the CLI (with its examples/), shared
    by the tests that need some trained checkpoint, not a good one."""
    import yaml

    from gemfactory.cli import main

    out = tmp_path_factory.mktemp("two-step-run")
    recipe = tmp_path_factory.mktemp("two-step-recipe") / "tiny.yaml"
    recipe.write_text(yaml.safe_dump(tiny_recipe(tiny_data, out)))
    assert main(["-q", "train", str(recipe), "stages.finetune.max_steps=2"]) == 0
    return out
