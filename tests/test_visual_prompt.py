"""ViP-LLaVA visual prompts: drawing, validation, random prompts, the data layer and chat flags."""
import dataclasses
import json

import numpy as np
import pytest
from PIL import Image

from conftest import tiny_recipe
from gemfactory.data.visual_prompt import (
    PALETTE, TYPES, describe, draw_prompts, random_prompt, shape_mask, validate_prompt,
)
from gemfactory.errors import DataError, GemError

RED = np.array(PALETTE["red"])


def noise(w=48, h=36, seed=0, mode="RGB") -> Image.Image:
    """Random pixels, kept away from pure red so a blended pixel never looks untouched."""
    arr = np.random.default_rng(seed).integers(0, 200, size=(h, w, len(mode)), dtype=np.uint8)
    if mode == "RGBA":
        arr[..., 3] = 255
    return Image.fromarray(arr, mode)


def arr(img) -> np.ndarray:
    return np.asarray(img, dtype=np.int32)


def changed(a: Image.Image, b: Image.Image) -> np.ndarray:
    return (arr(a) != arr(b)).any(-1)


# drawing -------------------------------------------------------------------------------------
def test_bbox_outline_has_the_colour_and_the_interior_is_untouched():
    img = noise()
    out = draw_prompts(img, [{"type": "bbox", "bbox": [5, 6, 25, 20], "color": "red", "width": 2, "alpha": 1}])
    expected = np.zeros((36, 48), bool)
    expected[6:21, 5:26] = True  # the box, both ends inclusive
    expected[8:19, 7:24] = False  # minus the interior inside the 2-pixel outline
    assert (arr(out)[expected] == RED).all()
    assert (arr(out)[~expected] == arr(img)[~expected]).all()


def test_alpha_blends_the_colour_with_the_image():
    img = noise()
    box = {"type": "bbox", "bbox": [3, 3, 30, 30], "color": "red", "width": 3}
    full = draw_prompts(img, [{**box, "alpha": 1.0}])
    half = draw_prompts(img, [{**box, "alpha": 0.5}])
    none = draw_prompts(img, [{**box, "alpha": 0.0}])
    where = changed(full, img)
    assert where.sum() > 0 and (changed(half, img) == where).all()
    blended = 0.5 * RED + 0.5 * arr(img)[where]
    assert np.abs(arr(half)[where] - blended).max() <= 1
    assert (arr(none) == arr(img)).all()


def test_ellipse_is_an_outline_inside_its_box():
    img = noise(60, 50)
    out = draw_prompts(img, [{"type": "ellipse", "bbox": [10, 8, 50, 40], "width": 2}])
    where = changed(out, img)
    ys, xs = np.nonzero(where)
    assert xs.min() == 10 and xs.max() == 50 and ys.min() == 8 and ys.max() == 40
    assert where[8, 30] and where[40, 30] and where[24, 10] and where[24, 50]  # the four extremes
    yy, xx = np.mgrid[:50, :60]
    assert not where[((xx - 30) / 17) ** 2 + ((yy - 24) / 13) ** 2 < 1].any()  # the inside is left alone
    assert not where[((xx - 30) / 21) ** 2 + ((yy - 24) / 17) ** 2 > 1].any()  # and so is the outside
    assert (arr(out)[where] == RED).all()


def test_arrow_runs_from_start_to_end_with_a_wider_head():
    img = noise(80, 60)
    out = draw_prompts(img, [{"type": "arrow", "start": [5, 30], "end": [70, 30], "color": "blue", "width": 1}])
    where = changed(out, img)
    assert where[30, 5] and where[30, 70] and where[30, 5:71].all()
    assert where[:, 20].sum() == 1  # the shaft is one pixel wide
    assert where[:, 66].sum() >= 5  # the head spreads across the shaft near the tip
    ys, xs = np.nonzero(where)
    assert xs.min() == 5 and xs.max() == 70 and 20 <= ys.min() and ys.max() <= 40
    assert (arr(out)[where] == np.array(PALETTE["blue"])).all()


def test_scribble_passes_through_its_points_and_stays_near_them():
    img = noise(60, 50)
    pts = [[5, 5], [20, 40], [35, 10], [50, 45]]
    where = changed(draw_prompts(img, [{"type": "scribble", "points": pts, "width": 3}]), img)
    for x, y in pts:
        assert where[y, x]
    ys, xs = np.nonzero(where)
    assert xs.min() >= 5 - 2 and xs.max() <= 50 + 2 and ys.min() >= 5 - 2 and ys.max() <= 45 + 2
    assert not where[25, 45]  # off the line


def test_point_is_a_filled_dot():
    img = noise()
    out = draw_prompts(img, [{"type": "point", "point": [20, 15], "radius": 4, "color": "#00ff00"}])
    where = changed(out, img)
    yy, xx = np.mgrid[:36, :48]
    dist = np.hypot(xx - 20, yy - 15)
    assert where[dist <= 3].all()  # filled, not a ring
    assert not where[dist > 5].any()
    assert (arr(out)[where] == [0, 255, 0]).all()


def test_mask_contour_is_the_polygon_outline():
    img = noise(60, 50)
    pts = [[10, 10], [50, 12], [45, 40], [12, 35]]
    out = draw_prompts(img, [{"type": "mask", "points": pts, "width": 1, "color": "yellow"}])
    where = changed(out, img)
    for x, y in pts:
        assert where[y, x]
    assert not where[18:30, 20:40].any()  # outline only
    ys, xs = np.nonzero(where)
    assert xs.min() == 10 and xs.max() == 50 and ys.min() == 10 and ys.max() == 40


def test_prompts_are_drawn_in_order_and_the_input_is_not_modified():
    img = noise(mode="RGBA")
    before = arr(img).copy()
    prompts = [{"type": "point", "point": [10, 10], "radius": 3, "color": "red"},
               {"type": "point", "point": [10, 10], "radius": 1, "color": "blue"}]
    out = draw_prompts(img, prompts)
    assert out is not img and out.mode == "RGBA" and out.size == img.size
    assert (arr(img) == before).all()
    assert tuple(out.getpixel((10, 10)))[:3] == PALETTE["blue"]  # later prompts lie on top
    assert tuple(out.getpixel((12, 10)))[:3] == PALETTE["red"]
    assert draw_prompts(img.convert("L"), prompts).mode == "RGB"


def test_shape_mask_matches_the_drawn_pixels():
    img = noise()
    prompt = {"type": "ellipse", "bbox": [4, 4, 40, 30], "width": 3}
    mask = np.asarray(shape_mask(validate_prompt(prompt, img.size), img.size)) > 0
    assert (mask == changed(draw_prompts(img, [prompt]), img)).all()


# validation ----------------------------------------------------------------------------------
@pytest.mark.parametrize("prompts, message", [
    ([{"type": "bbox", "bbox": [1, 2, 60, 10]}],
     "visual prompt 0: bbox: x2=60 is outside the 48x36 image (expected 0 <= x2 <= 47)"),
    ([{"type": "point", "point": [1, 1]}, {"type": "bbox", "bbox": [20, 2, 10, 10]}],
     "visual prompt 1: bbox: x2=10 is not right of x1=20 (expected x2 > x1)"),
    ([{"type": "ellipse", "bbox": [2, 9, 10, 9]}], "visual prompt 0: bbox: y2=9 is not below y1=9 (expected y2 > y1)"),
    ([{"type": "bbox", "bbox": [1, 2, 3]}], "visual prompt 0: bbox: [1, 2, 3] is not a box (expected [x1, y1, x2, y2])"),
    ([{"type": "scribble", "points": [[1, 1]]}],
     "visual prompt 0: points: has 1 point(s) (expected a list of at least 2 [x, y] points)"),
    ([{"type": "mask", "points": [[1, 1], [5, 5]]}],
     "visual prompt 0: points: has 2 point(s) (expected a list of at least 3 [x, y] points)"),
    ([{"type": "mask", "points": [[1, 1], [5, 5], [3, -1]]}],
     "visual prompt 0: points[2]: y=-1 is outside the 48x36 image (expected 0 <= y <= 35)"),
    ([{"type": "circle", "bbox": [1, 1, 5, 5]}],
     "visual prompt 0: type: 'circle' is not a visual prompt type "
     "(expected one of bbox, ellipse, arrow, scribble, point, mask)"),
    ([{"type": "point", "point": [1, 1], "color": "teal"}],
     "visual prompt 0: color: 'teal' is not a known colour (expected #rrggbb or one of red, green"),
    ([{"type": "arrow", "start": [4, 4], "end": [4, 4]}],
     "visual prompt 0: end: is the same point as start (expected an arrow of non-zero length)"),
    ([{"type": "arrow", "start": [4, 4]}], "visual prompt 0: end: missing (a arrow prompt needs start and end)"),
    ([{"type": "bbox", "bbox": [1, 1, 5, 5], "alpha": 1.5}],
     "visual prompt 0: alpha: 1.5 is out of range (expected 0 <= alpha <= 1)"),
    ([{"type": "bbox", "bbox": [1, 1, 5, 5], "width": 0}],
     "visual prompt 0: width: 0 is not a line width (expected an integer >= 1 pixels)"),
    ([{"type": "bbox", "bbox": [1, 1, 5, 5], "colour": "red"}],
     "visual prompt 0: colour: unknown field for a bbox prompt (expected one of type, bbox, color, width, alpha)"),
    ({"type": "bbox"}, "visual_prompts: is a dict (expected a list of prompt objects)"),
])
def test_bad_prompts_give_one_line_naming_index_field_and_expectation(prompts, message):
    with pytest.raises(DataError) as info:
        draw_prompts(noise(), prompts)
    text = str(info.value)
    assert "\n" not in text and text.startswith(message), text


def test_describe_names_colour_and_shape():
    assert describe({"type": "bbox", "bbox": [0, 0, 1, 1], "color": "red"}) == "the red rectangle"
    assert describe({"type": "arrow", "color": "blue"}) == "the blue arrow"
    assert describe({"type": "point"}) == "the red point"  # red by default
    assert describe({"type": "mask", "color": "#f0f000"}) == "the yellow contour"  # nearest palette name
    assert [describe({"type": t, "color": "green"}).split()[-1] for t in TYPES] == \
        ["rectangle", "ellipse", "arrow", "scribble", "point", "contour"]


# random prompts ------------------------------------------------------------------------------
def test_random_prompts_are_seeded_valid_and_varied():
    size = (64, 48)
    assert random_prompt(size, 7) == random_prompt(size, np.random.default_rng(7))
    prompts = [random_prompt(size, seed) for seed in range(150)]
    assert len({json.dumps(p, sort_keys=True) for p in prompts}) > 140
    assert {p["type"] for p in prompts} == set(TYPES)
    assert {p["color"] for p in prompts} <= set(PALETTE) and len({p["color"] for p in prompts}) >= 8
    for p in prompts:
        validate_prompt(p, size)  # inside the image, well formed
        assert 0.6 <= p["alpha"] <= 1.0 and p["width"] >= 1
    draw_prompts(noise(64, 48), prompts)


def test_random_prompts_mark_the_target_box():
    box = [20, 10, 40, 30]
    for seed in range(60):
        p = random_prompt((64, 48), seed, target_box=box)
        if p["type"] == "bbox":
            assert p["bbox"] == box
        elif p["type"] == "point":
            assert 20 <= p["point"][0] <= 40 and 10 <= p["point"][1] <= 30
        elif p["type"] == "arrow":
            assert 20 <= p["end"][0] <= 40 and 10 <= p["end"][1] <= 30
    with pytest.raises(DataError, match="target_box: x2=90 is outside the 64x48 image"):
        random_prompt((64, 48), 0, target_box=[1, 1, 90, 5])
    with pytest.raises(DataError, match="too small"):
        random_prompt((4, 4), 0)


# data layer ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def processor(tiny_built):
    from gemfactory.data.processor import Processor

    _, tok, model, template = tiny_built
    return Processor.from_model(model, tok, template, max_length=256)


def _item(item_id="vp1", image="square.png", prompts=None):
    item = {"id": item_id, "conversations": [
        {"from": "human", "value": "<image>\nWhat is inside the red rectangle?"},
        {"from": "gpt", "value": "Noise."}]}
    if image:
        item["image"] = image
    if prompts is not None:
        item["visual_prompts"] = prompts
    return item


BOX = [{"type": "bbox", "bbox": [8, 10, 40, 30], "width": 2, "color": "red"}]


@pytest.fixture()
def folder(tmp_path):
    noise(64, 64, seed=3).save(tmp_path / "square.png")
    return tmp_path


def test_sample_visual_prompts_change_pixel_values_exactly_where_drawn(processor, folder):
    from gemfactory.data.dataset import GemDataset

    (folder / "data.json").write_text(json.dumps([_item("plain"), _item("boxed", prompts=BOX)]))
    ds = GemDataset(folder / "data.json", processor, image_folder=folder, on_bad_sample="error")
    plain, boxed = ds[0], ds[1]
    assert torch_equal(plain["input_ids"], boxed["input_ids"])
    assert plain["image_size"].tolist() == boxed["image_size"].tolist() == [64, 64]
    img = Image.open(folder / "square.png").convert("RGB")
    views = processor.image_processor.views
    assert torch_equal(boxed["pixel_values"], views(draw_prompts(img, BOX)))
    assert not torch_equal(plain["pixel_values"], boxed["pixel_values"])
    # at the image's own size, the tensors differ at exactly the drawn pixels
    same_size = dataclasses.replace(processor, image_processor=dataclasses.replace(
        processor.image_processor, size=64, aspect="resize"))
    diff = (same_size.sample(_item("boxed", prompts=BOX), folder)["pixel_values"]
            != same_size.sample(_item("plain"), folder)["pixel_values"])[0].any(0).numpy()
    drawn = np.asarray(shape_mask(validate_prompt(BOX[0], (64, 64)), (64, 64))) > 0
    assert (diff == drawn).all() and drawn.sum() > 0


def torch_equal(a, b) -> bool:
    return a.shape == b.shape and bool((a == b).all())


def test_sample_prompt_errors_name_the_sample(processor, folder):
    with pytest.raises(DataError, match=r"^sample vp9: has visual_prompts but no image to draw them on$"):
        processor.sample(_item("vp9", image=None, prompts=BOX), folder)
    bad = [{"type": "bbox", "bbox": [8, 10, 80, 30]}]
    with pytest.raises(DataError, match=r"^sample vp2: visual prompt 0: bbox: x2=80 is outside the 64x64 image"):
        processor.sample(_item("vp2", prompts=bad), folder)


def test_random_visual_prompts_are_drawn_per_sample_id(processor, folder):
    always = dataclasses.replace(processor, random_visual_prompts=1.0)
    plain = processor.sample(_item("a"), folder)["pixel_values"]
    first = always.sample(_item("a"), folder)["pixel_values"]
    assert not torch_equal(first, plain)
    assert torch_equal(first, always.sample(_item("a"), folder)["pixel_values"])  # same id, same prompt
    others = [always.sample(_item(f"id{k}"), folder)["pixel_values"] for k in range(3)]
    assert not all(torch_equal(first, o) for o in others)
    # a sample with its own prompts keeps exactly those
    assert torch_equal(always.sample(_item("a", prompts=BOX), folder)["pixel_values"],
                       processor.sample(_item("a", prompts=BOX), folder)["pixel_values"])


def test_recipe_random_visual_prompts_reaches_the_training_processor(tiny_data, tmp_path, monkeypatch):
    import gemfactory.train.trainer as trainer
    from gemfactory.config import recipe_from_dict
    from gemfactory.errors import ConfigError

    raw = tiny_recipe(tiny_data, tmp_path)
    raw["data"]["random_visual_prompts"] = 1.5
    with pytest.raises(ConfigError, match="data.random_visual_prompts: must be within"):
        recipe_from_dict(raw)
    raw["data"]["random_visual_prompts"] = 0.25
    seen = []

    def capture(path, processor, *a, **k):
        seen.append(processor.random_visual_prompts)
        raise GemError("stop here")

    monkeypatch.setattr(trainer, "GemDataset", capture)
    with pytest.raises(GemError, match="stop here"):
        trainer.train(recipe_from_dict(raw))
    assert seen == [0.25]


# chat ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def checkpoint(tiny_built, tmp_path_factory):
    from gemfactory.model.checkpoint import save_checkpoint

    recipe, tok, model, _ = tiny_built
    return save_checkpoint(model, tok, tmp_path_factory.mktemp("vp-ckpt") / "model", recipe.to_dict())


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def test_chat_bbox_is_drawn_on_the_image_the_model_sees(checkpoint, folder, monkeypatch, capsys):
    from gemfactory.cli import main
    from gemfactory.data.processor import Processor

    seen = []
    real = Processor.image_inputs

    def spy(self, image):
        seen.append(image)
        return real(self, image)

    monkeypatch.setattr(Processor, "image_inputs", spy)
    code = main(["-q", "chat", str(checkpoint), "--image", str(folder / "square.png"), "--bbox", "8,10,40,30",
                 "--point", "50,50", "--prompt-width", "2", "--max-new-tokens", "2", "What is in the red box?"])
    assert code == 0, capsys.readouterr().err
    assert len(seen) == 1 and isinstance(seen[0], Image.Image)
    img = Image.open(folder / "square.png").convert("RGB")
    assert (arr(seen[0]) == arr(draw_prompts(img, [BOX[0], {"type": "point", "point": [50, 50], "width": 2}]))).all()
    assert seen[0].getpixel((8, 10)) == seen[0].getpixel((40, 30)) == PALETTE["red"]  # corners of the box
    assert seen[0].getpixel((24, 20)) == img.getpixel((24, 20))  # its inside is untouched


@pytest.mark.parametrize("flags, message", [
    (["--bbox", "1,2,3"], "error: --bbox '1,2,3': expected x1,y1,x2,y2 (4 comma-separated pixel coordinates)"),
    (["--point", "a,b"], "error: --point 'a,b': expected x,y (2 comma-separated pixel coordinates)"),
    (["--bbox", "1,2,3,4", "--prompt-color", "teal"], "error: --prompt-color 'teal': expected #rrggbb or one of"),
])
def test_chat_bad_prompt_flags_fail_with_one_line(checkpoint, folder, capsys, flags, message):
    from gemfactory.cli import main

    assert main(["-q", "chat", str(checkpoint), "--image", str(folder / "square.png"), *flags, "hi"]) == 2
    assert one_error_line(capsys).startswith(message)


def test_chat_prompt_flags_need_an_image_that_holds_them(checkpoint, folder, capsys):
    from gemfactory.cli import main

    assert main(["-q", "chat", str(checkpoint), "--bbox", "1,2,3,4", "hi"]) == 2
    assert one_error_line(capsys) == "error: --bbox draws on an image: give --image too"
    assert main(["-q", "chat", str(checkpoint), "--image", str(folder / "square.png"),
                 "--arrow", "1,2,70,4", "hi"]) == 2
    assert one_error_line(capsys) == ("error: --arrow 1,2,70,4: end: x=70 is outside the 64x64 image "
                                      "(expected 0 <= x <= 63)")


def test_chat_session_keeps_its_api_and_draws_prompts(checkpoint, folder, capsys):
    from gemfactory.infer.chat import ChatSession
    from gemfactory.infer.generate import GenerationSettings
    from gemfactory.infer.load import load_pretrained_model

    loaded = load_pretrained_model(checkpoint)
    settings = GenerationSettings(max_new_tokens=2)
    path = str(folder / "square.png")
    assert ChatSession(loaded, settings, image=path).model_image() == path
    session = ChatSession(loaded, settings, image=path, visual_prompts=BOX)
    img = Image.open(path).convert("RGB")
    assert (arr(session.model_image()) == arr(draw_prompts(img, BOX))).all()
    session.command("/image " + path)  # a new image drops prompts placed on the old one
    assert session.visual_prompts == [] and "visual prompts cleared" in capsys.readouterr().out
    with pytest.raises(GemError, match="visual prompts are drawn on an image"):
        ChatSession(loaded, settings, visual_prompts=BOX)
