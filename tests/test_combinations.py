"""A covering set of (LLM x vision tower x ECG encoder x connector) combinations, each assembled from a
recipe at tiny scale and trained one step. Every registered component appears at least twice."""
import pytest
import torch

from conftest import tiny_recipe
from gemfactory.registry import CONNECTORS, ECG_ENCODERS, LLMS, VISION_TOWERS

TOWERS = {
    "clip": {"name": "clip", "arch": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                                      "num_attention_heads": 2, "image_size": 32, "patch_size": 16}},
    "siglip": {"name": "siglip", "arch": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                                          "num_attention_heads": 2, "image_size": 32, "patch_size": 16}},
    "open_clip": {"name": "open_clip", "arch": {"model_name": "ViT-B-32", "embed_dim": 16, "width": 32,
                                                "layers": 2, "head_width": 16, "patch_size": 16, "image_size": 32}},
    "timm": {"name": "timm", "arch": {"model_name": "vit_tiny_patch16_224", "img_size": 32, "embed_dim": 32,
                                      "depth": 2, "num_heads": 2}},
}
LLM_WIDTH = 64  # every family's tiny_arch
ECGS = {
    "vit1d": {"name": "vit1d", "arch": {"tiny": True, "width": LLM_WIDTH, "layers": 1, "heads": 2}},
    "resnet1d": {"name": "resnet1d", "arch": {"tiny": True, "widths": [16, 16, 32, LLM_WIDTH]}},
    "ecg_image": {"name": "ecg_image", "arch": {"tiny": True}},
}
CONNS = {
    "linear": {"name": "linear"},
    "mlp2x_gelu": {"name": "mlp2x_gelu"},
    "mlp3x_gelu": {"name": "mlp3x_gelu"},
    "identity": {"name": "identity"},  # ECG width == LLM width above
    "resampler": {"name": "resampler", "options": {"num_queries": 4, "depth": 1}},
}
# (llm, tower, ecg encoder, image connector, ecg connector)
COMBOS = [
    ("vicuna", "clip", "vit1d", "mlp2x_gelu", "identity"),
    ("phi", "siglip", "resnet1d", "linear", "mlp2x_gelu"),
    ("llama3", "open_clip", "ecg_image", "resampler", "linear"),
    ("qwen2", "timm", "vit1d", "mlp3x_gelu", "resampler"),
    ("tinyllama", "clip", "resnet1d", "resampler", "identity"),
    ("stablelm2", "siglip", "ecg_image", "mlp2x_gelu", "mlp3x_gelu"),
    ("gemma", "open_clip", "vit1d", "linear", "linear"),
    ("vicuna", "timm", "resnet1d", "linear", "mlp2x_gelu"),
    ("phi", "clip", "ecg_image", "mlp2x_gelu", "resampler"),
    ("llama3", "siglip", "vit1d", "linear", "identity"),
    ("qwen2", "open_clip", "resnet1d", "mlp2x_gelu", "linear"),
    ("tinyllama", "timm", "ecg_image", "linear", "mlp2x_gelu"),
    ("stablelm2", "clip", "vit1d", "resampler", "linear"),
    ("gemma", "siglip", "resnet1d", "mlp3x_gelu", "identity"),
]


def test_the_combinations_cover_every_component_twice():
    from collections import Counter

    used = Counter(name for combo in COMBOS for name in combo)
    registered = {e.name for reg in (LLMS, VISION_TOWERS, ECG_ENCODERS, CONNECTORS) for e in reg.entries()
                  if e.origin == "gemfactory" and "{" not in e.name} | {"mlp2x_gelu", "mlp3x_gelu"}
    assert {name: used[name] for name in registered if used[name] < 2} == {}


@pytest.mark.parametrize("combo", COMBOS, ids=["-".join(c) for c in COMBOS])
def test_combination_trains_one_step(combo, tiny_data, tmp_path):
    from gemfactory.config import recipe_from_dict
    from gemfactory.data.dataset import Collator, GemDataset
    from gemfactory.data.processor import Processor
    from gemfactory.model.builder import build_model, build_tokenizer
    from gemfactory.registry import TEMPLATES
    from gemfactory.data.recipe_tokenizer import tokenizer_texts as _tokenizer_texts

    llm, tower, ecg, image_conn, ecg_conn = combo
    raw = tiny_recipe(tiny_data, tmp_path / "run")
    raw["model"] = {"llm": {"name": llm, "tokenizer_vocab_size": 400}, "vision": TOWERS[tower],
                    "ecg": ECGS[ecg], "connectors": {"image": CONNS[image_conn], "ecg": CONNS[ecg_conn]}}
    recipe = recipe_from_dict(raw)
    template = TEMPLATES.get(LLMS.get(llm).default_template)()
    tok = build_tokenizer(recipe.model, _tokenizer_texts(recipe, template))
    torch.manual_seed(0)
    model = build_model(recipe.model, tok)
    proc = Processor.from_model(model, tok, template, 512)
    ds = GemDataset(recipe.data.train, proc, recipe.data.image_folder, recipe.data.ecg_folder)
    kinds = {}
    for i, item in enumerate(ds.items):
        kinds.setdefault((bool(item.get("image")), bool(item.get("ecg"))), i)
    batch = Collator(tok.pad_token_id)([ds[i] for i in kinds.values()])
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    loss = model(**batch).loss
    loss.backward()
    opt.step()
    assert torch.isfinite(loss), combo
