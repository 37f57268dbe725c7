"""The siglip / open_clip / timm towers, the resnet1d ECG encoder and the identity / resampler
connectors: shapes, gradients, user errors, and each one assembled inside a GemForCausalLM."""
import pytest
import torch

from gemfactory.errors import ConfigError
from gemfactory.registry import CONNECTORS, ECG_ENCODERS, VISION_TOWERS

B = 2


def tower(name, arch=None, **options):
    cls = VISION_TOWERS.get(name)
    arch, options = cls.resolve(cls.tiny_arch if arch is None else arch, options, None)
    torch.manual_seed(0)
    return cls(arch, options)


def encoder(name, arch=None, signal=None):
    cls = ECG_ENCODERS.get(name)
    arch, spec = cls.resolve({"tiny": True} if arch is None else arch, signal or {})
    torch.manual_seed(0)
    return cls(arch, spec)


def no_grad_params(module, out):
    """Backpropagate a scalar of ``out``; the names of parameters no gradient reached."""
    out.float().pow(2).mean().backward()
    return [n for n, p in module.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]


def images(t):
    return torch.randn(B, 3, t.image_size, t.image_size)


# vision towers ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name, options, unused", [
    # HF SigLIP's post_layernorm only feeds the pooled output, never the hidden states
    ("siglip", {"select_layer": -1}, {"model.post_layernorm.weight", "model.post_layernorm.bias"}),
    ("open_clip", {"select_layer": -1}, set()),
    ("open_clip", {"select_layer": -1, "select_feature": "cls_patch"}, set()),
    ("timm", {}, set()),
    ("timm", {"select_feature": "cls_patch"}, set()),
])
def test_tower_shapes_and_gradients(name, options, unused):
    t = tower(name, **options)
    out = t(images(t))
    assert out.shape == (B, t.num_tokens, t.hidden_size)
    assert set(no_grad_params(t, out)) == unused


@pytest.mark.parametrize("name, patches", [("siglip", 4), ("open_clip", 4), ("timm", 4)])
def test_default_options_and_cls_token(name, patches):
    t = tower(name)
    assert t.num_tokens == patches and tuple(t(images(t)).shape) == (B, patches, t.hidden_size)
    if name != "siglip":
        assert tower(name, select_feature="cls_patch").num_tokens == patches + 1
    else:
        with pytest.raises(ConfigError, match="model.vision.options.select_feature: 'cls_patch'.*SigLIP has none"):
            tower(name, select_feature="cls_patch")


@pytest.mark.parametrize("name", ["siglip", "open_clip"])
def test_multi_layer_concat(name):
    single = tower(name, select_layer=-1)
    t = tower(name, layers=[-2, -1, 0])
    out = t(images(t))
    assert t.hidden_size == 3 * single.hidden_size and out.shape == (B, t.num_tokens, t.hidden_size)
    t.load_state_dict(single.state_dict())
    x = images(t)
    with torch.no_grad():  # the last layer's slice is what select_layer -1 gives
        assert torch.allclose(t(x)[..., single.hidden_size:2 * single.hidden_size], single(x), atol=1e-5)


@pytest.mark.parametrize("name, options, key", [
    ("siglip", {"select_layer": 99}, "select_layer: 99 is out of range"),
    ("siglip", {"layers": [-1, 7]}, "layers: 7 is out of range"),
    ("open_clip", {"select_layer": -4}, "select_layer: -4 is out of range"),
    ("timm", {"select_layer": 3}, "select_layer: 3 is out of range"),
    ("timm", {"select_layer": 0}, "select_layer: 0 is out of range"),
])
def test_select_layer_out_of_range(name, options, key):
    with pytest.raises(ConfigError, match=f"model.vision.options.{key}"):
        tower(name, **options)


def test_timm_intermediate_layer_and_convnet_feature_map():
    vit = tower("timm", select_layer=-2, select_feature="cls_patch")
    assert vit(images(vit)).shape == (B, 5, 32)
    cnn = tower("timm", {"model_name": "test_resnet"}, image_size=64)
    out = cnn(images(cnn))
    assert cnn.num_tokens == 4 and out.shape == (B, 4, cnn.hidden_size)  # 64 px / stride 32 = 2 x 2 cells
    assert no_grad_params(cnn, out) == []
    from timm.data import resolve_data_config

    data = resolve_data_config(model=cnn.model)
    assert cnn.image_processor().mean == pytest.approx(data["mean"])  # timm's data config
    assert cnn.image_processor().std == pytest.approx(data["std"]) and data["input_size"][-1] != 64
    early = tower("timm", {"model_name": "test_resnet"}, image_size=64, select_layer=-2)
    assert early(images(early)).shape == (B, 16, early.hidden_size)


@pytest.mark.parametrize("name, arch, key, hint", [
    ("open_clip", {"model_name": "ViT-B-23"}, "model.vision.arch.model_name", "ViT-B-32"),
    ("open_clip", {"model_name": "RN50"}, "model.vision.arch.model_name", "ModifiedResNet"),
    ("open_clip", {"model_name": "ViT-B-32", "widht": 8}, "model.vision.arch", "widht"),
    ("open_clip", {"width": 8}, "model.vision.arch.model_name", "required"),
    ("timm", {"model_name": "vit_tiny_patch61_224"}, "model.vision.arch.model_name", "vit_tiny_patch16_224"),
    ("timm", {"model_name": "test_vit", "no_such_kwarg": 1}, "model.vision.arch", "no_such_kwarg"),
    ("siglip", {"hidden_sise": 8}, "model.vision.arch", "hidden_sise"),
])
def test_bad_arch_is_a_config_error(name, arch, key, hint):
    with pytest.raises(ConfigError) as err:
        tower(name, arch)
    msg = str(err.value)
    assert msg.startswith(key + ":") and hint in msg and "\n" not in msg, msg


def test_open_clip_reads_a_whole_clip_checkpoint(tmp_path):
    import open_clip
    from safetensors.torch import save_file

    t = tower("open_clip", select_layer=-1).eval()
    a = t.arch
    vision_cfg = {k: v for k, v in a.items() if k not in ("model_name", "embed_dim", "quick_gelu")}
    text_cfg = dict(context_length=8, vocab_size=64, width=16, heads=2, layers=1)
    clip = open_clip.create_model(a["model_name"], pretrained=None, embed_dim=a["embed_dim"],
                                  vision_cfg=vision_cfg, text_cfg=text_cfg).eval()
    save_file({k: v.contiguous() for k, v in clip.state_dict().items()}, str(tmp_path / "clip.safetensors"))
    t.load_pretrained(str(tmp_path / "clip.safetensors"))
    x = images(t)
    with torch.no_grad():
        ref = clip.visual.forward_intermediates(x, indices=1, intermediates_only=True, output_fmt="NLC")
        assert torch.allclose(t(x), ref["image_intermediates"][0], atol=1e-6)


def test_siglip_reads_a_local_folder(tmp_path):
    import json

    from transformers import SiglipVisionConfig, SiglipVisionModel

    cls = VISION_TOWERS.get("siglip")
    torch.manual_seed(1)
    src = SiglipVisionModel(SiglipVisionConfig(**cls.tiny_arch)).eval()  # with its pooling head
    src.save_pretrained(tmp_path)
    (tmp_path / "preprocessor_config.json").write_text(json.dumps({"image_mean": [0.4] * 3, "image_std": [0.3] * 3}))
    arch, options = cls.resolve({}, {"image_std": [0.2] * 3}, str(tmp_path))
    assert arch["num_hidden_layers"] == 3 and arch["vision_use_head"] is False
    assert options["image_mean"] == [0.4] * 3 and options["image_std"] == [0.2] * 3  # the recipe wins
    t = cls(arch, options).eval()
    t.load_pretrained(str(tmp_path))
    x = images(t)
    with torch.no_grad():
        assert torch.allclose(t(x), src(x, output_hidden_states=True).hidden_states[-2], atol=1e-6)
    with pytest.raises(ConfigError, match="model.vision.path: .* is not a local folder"):
        cls.resolve({}, {}, str(tmp_path / "missing"))


def test_timm_checkpoint_round_trip(tmp_path):
    from safetensors.torch import save_file

    from gemfactory.errors import CheckpointError

    src, dst = tower("timm"), tower("timm")
    src.model.pos_embed.data.normal_()
    save_file({k: v.contiguous() for k, v in src.model.state_dict().items()}, str(tmp_path / "w.safetensors"))
    dst.load_pretrained(str(tmp_path / "w.safetensors"))
    x = images(src)
    with torch.no_grad():
        assert torch.equal(src.eval()(x), dst.eval()(x))
    save_file({"cls_token": src.model.cls_token.data}, str(tmp_path / "part.safetensors"))
    with pytest.raises(CheckpointError, match="model.vision.path: .* lacks weights"):
        dst.load_pretrained(str(tmp_path / "part.safetensors"))


# ECG encoder -----------------------------------------------------------------------------------
@pytest.mark.parametrize("arch, signal, tokens", [
    ({"tiny": True}, {}, 16),  # 1000 -> 500 (stem) -> 250 (pool) -> 125, 63, 32, 16
    ({"tiny": True, "norm": "group", "stem_pool": False}, {"n_samples": 997}, 32),
    ({"tiny": True, "kernel_size": 5, "stem_stride": 3}, {"n_samples": 1234}, 13),
])
def test_resnet1d_tokens_follow_the_signal_length(arch, signal, tokens):
    enc = encoder("resnet1d", arch, signal)
    out = enc(torch.randn(B, 12, enc.signal_spec.n_samples))
    assert enc.num_tokens == tokens and out.shape == (B, tokens, 32) and enc.hidden_size == 32
    assert no_grad_params(enc, out) == []


def test_resnet1d_full_size_and_frozen_batchnorm():
    cls = ECG_ENCODERS.get("resnet1d")
    arch, spec = cls.resolve({}, {})
    assert arch["widths"] == [64, 128, 256, 512] and spec.n_samples == 5000
    enc = encoder("resnet1d")
    bns = [m for m in enc.modules() if isinstance(m, torch.nn.BatchNorm1d)]
    assert enc.train().training and all(m.training for m in bns)
    enc.requires_grad_(False)
    before = bns[0].running_mean.clone()
    enc.train()(torch.randn(B, 12, 1000) + 3)
    assert not any(m.training for m in bns) and torch.equal(bns[0].running_mean, before)
    with pytest.raises(ConfigError, match="model.ecg.arch.kernel_size: 4 must be an odd"):
        encoder("resnet1d", {"tiny": True, "kernel_size": 4})
    with pytest.raises(ConfigError, match="model.ecg.arch: unknown keys \\['depth'\\]"):
        encoder("resnet1d", {"tiny": True, "depth": 3})


# connectors ------------------------------------------------------------------------------------
def test_identity_connector():
    conn = CONNECTORS.get("identity")(32, 32)
    x = torch.randn(B, 5, 32)
    assert conn(x) is x
    with pytest.raises(ConfigError, match="connector 'identity': the encoder gives 64-wide tokens .* 32"):
        CONNECTORS.get("identity")(64, 32)


def test_resampler_connector():
    res_cls = CONNECTORS.get("resampler")
    conn = res_cls(24, 32, num_queries=6, depth=2)
    out = conn(torch.randn(B, 11, 24))
    assert out.shape == (B, 6, 32) and conn.output_tokens(11) == 6
    assert no_grad_params(conn, out) == []
    assert res_cls(24, 32).output_tokens(5) == 64  # default num_queries
    assert res_cls(8, 12).layers[0].attn.num_heads == 4  # default heads: the largest of 8, 4, 2, 1 dividing 12
    with pytest.raises(ConfigError, match="connector 'resampler': heads 5 must be a positive divisor of .* 32"):
        res_cls(24, 32, heads=5)
    with pytest.raises(ConfigError, match="connector 'resampler': unknown option 'queries' \\(options it takes: num_queries, depth, heads, mlp_ratio\\)"):
        res_cls(24, 32, queries=4)


# inside a GemForCausalLM -----------------------------------------------------------------------
TINY_SIGLIP = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                   image_size=32, patch_size=16)
ASSEMBLIES = {
    "siglip+resnet1d+identity": dict(
        vision={"name": "siglip", "arch": TINY_SIGLIP},
        ecg={"name": "resnet1d", "arch": {"tiny": True}},
        connectors={"image": {"name": "mlp2x_gelu"}, "ecg": {"name": "identity"}}),
    "open_clip": dict(vision={"name": "open_clip", "arch": {
        "model_name": "ViT-B-32", "embed_dim": 16, "width": 32, "layers": 2, "head_width": 16,
        "patch_size": 16, "image_size": 32}}),
    "timm-vit": dict(vision={"name": "timm", "arch": {
        "model_name": "vit_tiny_patch16_224", "img_size": 32, "embed_dim": 32, "depth": 2, "num_heads": 2}}),
    "timm-cnn": dict(vision={"name": "timm", "arch": {"model_name": "test_resnet"}, "options": {"image_size": 32}}),
    "resampler": dict(connectors={"image": {"name": "resampler", "options": {"num_queries": 6, "depth": 1}},
                                  "ecg": {"name": "linear"}}),
}


@pytest.fixture(scope="module")
def tokenizer(tiny_data):
    from conftest import tiny_recipe
    from gemfactory.config import recipe_from_dict
    from gemfactory.model.builder import build_tokenizer
    from gemfactory.registry import TEMPLATES
    from gemfactory.data.recipe_tokenizer import tokenizer_texts as _tokenizer_texts

    recipe = recipe_from_dict(tiny_recipe(tiny_data, tiny_data / "runs-components"))
    return build_tokenizer(recipe.model, _tokenizer_texts(recipe, TEMPLATES.get("vicuna_v1")()))


@pytest.mark.parametrize("case", list(ASSEMBLIES))
def test_component_trains_inside_the_full_model(case, tiny_data, tokenizer, tmp_path):
    from transformers import AutoModelForCausalLM

    from conftest import tiny_recipe
    from gemfactory.config import recipe_from_dict
    from gemfactory.data.dataset import Collator, GemDataset
    from gemfactory.data.processor import Processor
    from gemfactory.model.builder import build_model
    from gemfactory.model.checkpoint import save_checkpoint
    from gemfactory.registry import TEMPLATES

    raw = tiny_recipe(tiny_data, tmp_path / "runs")
    raw["model"].update(ASSEMBLIES[case])
    recipe = recipe_from_dict(raw)
    torch.manual_seed(0)
    model = build_model(recipe.model, tokenizer)
    proc = Processor.from_model(model, tokenizer, TEMPLATES.get("vicuna_v1")(), 256)
    ds = GemDataset(recipe.data.train, proc, recipe.data.image_folder, recipe.data.ecg_folder)
    kinds = {}
    for i, item in enumerate(ds.items):
        kinds.setdefault((bool(item.get("image")), bool(item.get("ecg"))), i)
    assert len(kinds) == 4
    batch = Collator(tokenizer.pad_token_id)([ds[i] for i in kinds.values()])
    expected = model.modality_tokens()
    for key, token_id in (("image", model.config.image_token_id), ("ecg", model.config.ecg_token_id)):
        assert (batch["input_ids"] == token_id).sum().item() == 2 * expected[key]

    out = model(**batch)
    assert torch.isfinite(out.loss)
    out.loss.backward()
    for part in (model.vision_tower, model.ecg_encoder, *model.connectors.values()):
        params = list(part.parameters())  # the identity connector has none
        assert not params or any(p.grad is not None and p.grad.abs().sum() > 0 for p in params), type(part).__name__

    # the saved config alone (arch, options, signal spec) rebuilds the same modules
    folder = save_checkpoint(model, tokenizer, tmp_path / "ckpt", recipe.to_dict())
    loaded = AutoModelForCausalLM.from_pretrained(folder)
    assert loaded.modality_tokens() == expected
    model.eval(), loaded.eval()
    with torch.no_grad():
        assert torch.allclose(model(**batch).logits, loaded(**batch).logits, atol=1e-5)


@pytest.mark.parametrize(("tower", "example"), [("timm", "vit_base_patch16_224"), ("open_clip", "ViT-B-32")])
def test_library_towers_name_the_missing_model_name(tower, example):
    from gemfactory.errors import ConfigError
    from gemfactory.registry import VISION_TOWERS

    with pytest.raises(ConfigError, match=rf"model\.vision\.arch\.model_name: required for the {tower} tower, "
                                          rf"e\.g\. '{example}'"):
        VISION_TOWERS.get(tower).resolve({}, {}, None)
