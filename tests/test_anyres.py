"""LLaVA-NeXT any-resolution tiling: geometry matches transformers, tokens line up, it trains."""
import random

import pytest
import torch
from PIL import Image

from gemfactory.errors import ConfigError
from gemfactory.template.base import Turn
from gemfactory.vision.anyres import AnyResLayout

PINPOINTS = [[32, 64], [64, 32], [64, 64], [32, 96]]


def test_geometry_matches_transformers_llava_next():
    from transformers.models.llava_next.modeling_llava_next import get_anyres_image_grid_shape, unpad_image

    layout = AnyResLayout.from_options(PINPOINTS, tile=32, num_tokens=16)
    rng = random.Random(0)
    for _ in range(200):
        h, w = rng.randint(8, 400), rng.randint(8, 400)
        rows, cols = layout.grid_shape((h, w))
        assert (rows, cols) == get_anyres_image_grid_shape((h, w), PINPOINTS, 32)
        stitched = torch.zeros(1, rows * 4, cols * 4)
        assert layout.unpadded_shape((h, w)) == tuple(unpad_image(stitched, (h, w)).shape[1:])


def test_views_and_pack_order():
    layout = AnyResLayout.from_options(PINPOINTS, tile=32, num_tokens=4)  # 2x2 tokens per tile
    img = Image.new("RGB", (64, 32), (255, 0, 0))  # wide: one row of two tiles
    views = layout.views(img, (0, 0, 0))
    assert len(views) == layout.num_views((32, 64)) == 3 and all(v.size == (32, 32) for v in views)
    feats = torch.arange(3 * 4, dtype=torch.float32).reshape(3, 4, 1)  # view v, token t -> 4v + t
    packed = layout.pack(feats, (32, 64), newline=torch.tensor([-1.0]))
    assert packed.shape == (layout.num_tokens((32, 64)), 1)
    # base view first, then the stitched 2x4 map row by row with a newline closing each row
    assert packed[:4, 0].tolist() == [0, 1, 2, 3]
    assert packed[4:, 0].tolist() == [4, 5, 8, 9, -1, 6, 7, 10, 11, -1]


def test_bad_pinpoints_name_the_key():
    with pytest.raises(ConfigError, match="anyres_grid: \\[30, 64\\] is not a \\[height, width\\] pair"):
        AnyResLayout.from_options([[30, 64]], tile=32, num_tokens=4)
    with pytest.raises(ConfigError, match="square token grid"):
        AnyResLayout.from_options(PINPOINTS, tile=32, num_tokens=5)


def test_anyres_model_trains_and_round_trips(tiny_data, tmp_path):
    from conftest import tiny_recipe
    from gemfactory.config import recipe_from_dict
    from gemfactory.data.dataset import Collator, GemDataset
    from gemfactory.data.processor import Processor
    from gemfactory.model.builder import build_model, build_tokenizer
    from gemfactory.model.checkpoint import save_checkpoint
    from gemfactory.registry import TEMPLATES
    from gemfactory.data.recipe_tokenizer import tokenizer_texts as _tokenizer_texts
    from transformers import AutoModelForCausalLM

    raw = tiny_recipe(tiny_data, tmp_path / "run")
    raw["model"]["vision"]["options"] = {"anyres_grid": PINPOINTS}
    recipe = recipe_from_dict(raw)
    template = TEMPLATES.get("vicuna_v1")()
    tok = build_tokenizer(recipe.model, _tokenizer_texts(recipe, template))
    torch.manual_seed(0)
    model = build_model(recipe.model, tok)
    proc = Processor.from_model(model, tok, template, 512)
    ds = GemDataset(recipe.data.train, proc, recipe.data.image_folder, recipe.data.ecg_folder)
    with_images = [i for i, item in enumerate(ds.items) if item.get("image")][:3]
    feats = [ds[i] for i in with_images]
    # the synthetic sheets are wide: 1 base view + a row of tiles, and the token count follows the size
    for f in feats:
        size = tuple(f["image_size"].tolist())
        assert f["pixel_values"].shape[0] == model.anyres.num_views(size) > 1
        assert (f["input_ids"] == model.config.image_token_id).sum() == model.anyres.num_tokens(size)
    # add a tall image so one batch mixes grid shapes
    tall = proc.image_inputs(Image.new("RGB", (40, 120), (0, 128, 255)))
    tall.update(proc.encode([Turn("user", "<image>\nColour?"), Turn("assistant", "Blue.")],
                            has_image=True, image_size=tall["image_size"]))
    batch = Collator(tok.pad_token_id)(feats + [tall])
    assert batch["image_sizes"].tolist()[-1] == [120, 40]
    out = model(**batch)
    out.loss.backward()
    assert torch.isfinite(out.loss) and model.image_newline.grad is not None
    folder = save_checkpoint(model, tok, tmp_path / "ckpt")
    loaded = AutoModelForCausalLM.from_pretrained(folder).eval()
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(**batch).logits, loaded(**batch).logits)
