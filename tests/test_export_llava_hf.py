"""``gemfactory export --format llava-hf``: transformers' LlavaForConditionalGeneration loads the folder
and gives gemfactory's logits (float32, <= 1e-5); its LlavaProcessor expands <image> to as many tokens
as gemfactory does; ECG and other unsupported models are refused in one line."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from conftest import TINY_MODEL, tiny_recipe

from gemfactory.cli import main

QWEN = {"name": "qwen2", "tokenizer_vocab_size": 400,
        "arch": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
                 "num_key_value_heads": 2}}
SIGLIP = {"name": "siglip", "arch": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 3,
                                     "num_attention_heads": 2, "image_size": 32, "patch_size": 8}}


def checkpoint(tiny_data, folder, llm=None, vision=None, vision_options=None, ecg=False):
    from gemfactory.config import recipe_from_dict
    from gemfactory.model.builder import build_model, build_tokenizer, recipe_template
    from gemfactory.data.recipe_tokenizer import tokenizer_texts
    from gemfactory.model.checkpoint import save_checkpoint

    raw = tiny_recipe(tiny_data, folder / "run")
    model_cfg = copy.deepcopy(TINY_MODEL)
    if not ecg:
        model_cfg.pop("ecg")
        model_cfg["connectors"].pop("ecg")
    model_cfg["llm"] = llm or model_cfg["llm"]
    model_cfg["vision"] = vision or model_cfg["vision"]
    model_cfg["vision"]["options"] = vision_options or {}
    if llm:
        model_cfg["template"] = None
    raw["model"] = model_cfg
    recipe = recipe_from_dict(raw)
    torch.manual_seed(0)
    tok = build_tokenizer(recipe.model, tokenizer_texts(recipe, recipe_template(recipe)))
    model = build_model(recipe.model, tok).eval()
    return save_checkpoint(model, tok, folder / "ckpt"), model, tok


@pytest.mark.parametrize("llm,vision,options", [
    (None, None, {"select_layer": -2, "select_feature": "patch"}),
    (None, None, {"layers": [-3, -1], "select_feature": "cls_patch"}),
    (QWEN, SIGLIP, {"select_feature": "drop_first_patch"}),
    (QWEN, SIGLIP, {"layers": [-2, -1]}),
    (None, None, {"select_layer": -2, "image_aspect": "crop"}),  # CLIP's resize + centre crop (GEM's `ori`)
    (QWEN, SIGLIP, {"image_aspect": "resize"}),
], ids=["vicuna-clip", "vicuna-clip-layers-cls", "qwen2-siglip-drop-first", "qwen2-siglip-layers", "clip-crop",
        "siglip-resize"])
def test_export_loads_in_transformers_with_equal_logits(tiny_data, tmp_path, llm, vision, options):
    from PIL import Image
    from transformers import LlavaForConditionalGeneration, LlavaProcessor

    ckpt, model, tok = checkpoint(tiny_data, tmp_path, copy.deepcopy(llm), copy.deepcopy(vision), options)
    assert main(["-q", "export", str(ckpt), str(tmp_path / "hf"), "--format", "llava-hf"]) == 0
    hf = LlavaForConditionalGeneration.from_pretrained(tmp_path / "hf").eval()
    processor = LlavaProcessor.from_pretrained(tmp_path / "hf")
    n = model.modality_tokens()["image"]
    # a left-to-right ramp: padding, cropping and stretching each give other pixels at the edges
    ramp = np.tile(np.linspace(0, 255, 40, dtype=np.uint8)[None, :, None], (24, 1, 3))
    image = Image.fromarray(ramp)
    batch = processor(text="<image> what is this?", images=image, return_tensors="pt")
    assert int((batch["input_ids"] == model.config.image_token_id).sum()) == n
    ours_px = model.vision_tower.image_processor()([image])
    assert batch["pixel_values"].shape == ours_px.shape
    assert (batch["pixel_values"] - ours_px).abs().max().item() < 0.05  # PIL vs numpy resizing, same recipe
    ids = torch.tensor([tok("a picture").input_ids + [model.config.image_token_id] * n + tok(" of what").input_ids])
    pixels = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        ours = model(input_ids=ids, pixel_values=pixels).logits
        theirs = hf(input_ids=ids, pixel_values=pixels).logits
    assert (ours - theirs).abs().max().item() <= 1e-5
    # the chat template writes the prompt gemfactory's template writes (BOS left to the tokenizer)
    from gemfactory.registry import TEMPLATES
    from gemfactory.template.base import Turn

    template = TEMPLATES.get(model.config.template)()
    for system in ([], [Turn("system", "Be brief.")]):
        turns = [*system, Turn("user", "<image>\nwhat is it?"), Turn("assistant", "a square"), Turn("user", "colour?")]
        messages = [{"role": t.role, "content": t.text} for t in turns]
        messages[len(system)]["content"] = [{"type": "image"}, {"type": "text", "text": "what is it?"}]
        expected = template.render_prompt(turns, tok).removeprefix(tok.bos_token or "")
        assert processor.apply_chat_template(messages, add_generation_prompt=True) == expected


def test_ecg_models_are_refused(tiny_data, tmp_path, capsys):
    ckpt, _, _ = checkpoint(tiny_data, tmp_path, ecg=True)
    assert main(["-q", "export", str(ckpt), str(tmp_path / "hf"), "--format", "llava-hf"]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert errors == ["error: export --format llava-hf: cannot export this checkpoint: it has an ECG encoder (vit1d); "
                   "transformers' LLaVA has no ECG tower or <ecg> placeholder, so ECG models keep gemfactory's format"]
    assert not (tmp_path / "hf").exists()


def test_non_llava_connector_is_refused(tiny_data, tmp_path, capsys):
    from gemfactory.errors import ConfigError
    from gemfactory.model.export_llava_hf import refuse_unless_exportable

    _, model, _ = checkpoint(tiny_data, tmp_path)
    model.config.connectors["image"]["name"] = "linear"
    with pytest.raises(ConfigError, match="connector 'linear' is not mlp2x_gelu"):
        refuse_unless_exportable(model.config)
