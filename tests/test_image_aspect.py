"""Image preprocessing modes against transformers' PIL CLIP processor (the one the seeds ran with).

``crop`` is CLIPImageProcessor's own resize-shortest-side + centre crop (GEM trains with
``image_aspect_ratio ori``, which hands the image to that processor unchanged); ``pad`` is LLaVA's
``expand2square`` with the mean colour followed by the same processor.
"""
import numpy as np
import pytest
import torch
from PIL import Image

from gemfactory.errors import ConfigError
from gemfactory.vision.base import CLIP_MEAN, ImagePreprocessor, expand_to_square

SIZES = [(500, 300), (300, 500), (2200, 1700), (101, 73), (336, 336)]


def reference(image, size):
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    hf = CLIPImageProcessorPil(size={"shortest_edge": size}, crop_size={"height": size, "width": size})
    return torch.from_numpy(np.asarray(hf(image, return_tensors="np")["pixel_values"][0]))


def image(w, h, seed=0):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


@pytest.mark.parametrize("w,h", SIZES)
def test_crop_equals_clip_processor(w, h):
    img = image(w, h)
    got = ImagePreprocessor(size=56, aspect="crop")([img])[0]
    assert torch.allclose(got, reference(img, 56), atol=1e-6, rtol=0)


@pytest.mark.parametrize("w,h", SIZES)
def test_pad_equals_llavas_expand2square_then_clip_processor(w, h):
    img = image(w, h)
    llava_fill = tuple(int(x * 255) for x in CLIP_MEAN)  # LLaVA: tuple(int(x*255) for x in image_mean)
    got = ImagePreprocessor(size=56, aspect="pad")([img])[0]
    assert torch.allclose(got, reference(expand_to_square(img, llava_fill), 56), atol=1e-6, rtol=0)


def test_unknown_image_aspect_is_a_config_error():
    from gemfactory.vision.clip import CLIPTower

    with pytest.raises(ConfigError, match="model.vision.options.image_aspect: 'ori' is not one of pad, crop, resize"):
        CLIPTower.check_options({"image_aspect": "ori"})


def test_gem_recipes_crop_as_gem_does():
    from pathlib import Path

    from gemfactory.config import load_recipe

    root = Path(__file__).parent.parent / "recipes"
    for name in ("gem-vicuna7b", "gem-phi2", "gem-llama3-8b", "gem-qwen2-1.5b"):
        assert load_recipe(root / f"{name}.yaml").model.vision.options["image_aspect"] == "crop", name
    assert load_recipe(root / "llava-v1.5-7b.yaml").model.vision.options["image_aspect"] == "pad"


@pytest.mark.parametrize("w,h", SIZES)
def test_resize_equals_siglip_processor(w, h):
    """TinyLLaVA's ``image_aspect_ratio square``: SigLIP's processor stretches to the square."""
    from transformers.models.siglip.image_processing_pil_siglip import (
        SiglipImageProcessorPil,
    )

    img = image(w, h)
    hf = SiglipImageProcessorPil(size={"height": 56, "width": 56})
    want = torch.from_numpy(np.asarray(hf(img, return_tensors="np")["pixel_values"][0]))
    got = ImagePreprocessor(size=56, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), aspect="resize")([img])[0]
    assert torch.allclose(got, want, atol=1e-6, rtol=0)


def test_tinyllava_recipe_takes_tinyllavas_siglip_features():
    from pathlib import Path

    from gemfactory.config import load_recipe

    options = load_recipe(Path(__file__).parent.parent / "recipes" / "tinyllava-phi2-siglip.yaml").model.vision.options
    assert (options["select_feature"], options["image_aspect"]) == ("drop_first_patch", "resize")
