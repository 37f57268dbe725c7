"""ECG encoders beyond the basics: the ``ecg_image`` encoder (render + vision tower), reading
ECG-CoCa / open_clip checkpoints into ``vit1d``, and the signal spec a checkpoint carries."""
import json

import numpy as np
import pytest
import torch

from gemfactory.errors import ConfigError, ECGError
from gemfactory.registry import ECG_ENCODERS

B = 2


def encoder(name, arch=None, signal=None):
    cls = ECG_ENCODERS.get(name)
    arch, spec = cls.resolve({"tiny": True} if arch is None else arch, signal or {})
    torch.manual_seed(0)
    return cls(arch, spec)


def signals(n=B, fs=100.0, seed=0):
    from gemfactory.data.synth import simulate_ecg

    rng = np.random.default_rng(seed)
    recs = [simulate_ecg(hr, fs=fs, rng=rng) for hr in np.linspace(50, 130, n)]
    return torch.from_numpy(np.stack(recs).astype(np.float32))


@pytest.fixture(scope="module")
def tokenizer(tiny_data):
    from conftest import tiny_recipe
    from gemfactory.config import recipe_from_dict
    from gemfactory.model.builder import build_tokenizer
    from gemfactory.registry import TEMPLATES
    from gemfactory.data.recipe_tokenizer import tokenizer_texts as _tokenizer_texts

    recipe = recipe_from_dict(tiny_recipe(tiny_data, tiny_data / "runs-ecg-encoders"))
    return build_tokenizer(recipe.model, _tokenizer_texts(recipe, TEMPLATES.get("vicuna_v1")()))


def recipe(tiny_data, tmp_path, **model):
    from conftest import tiny_recipe
    from gemfactory.config import recipe_from_dict

    raw = tiny_recipe(tiny_data, tmp_path / "runs")
    raw["model"].update(model)
    return recipe_from_dict(raw)


# ecg_image ---------------------------------------------------------------------------------------
def test_ecg_image_shapes_gradients_and_determinism():
    enc = encoder("ecg_image")
    assert (enc.num_tokens, enc.hidden_size) == (4, 32)  # tiny CLIP: 32 px / patch 16, width 32
    x = signals().requires_grad_(True)
    out = enc(x)
    assert out.shape == (B, enc.num_tokens, enc.hidden_size) and torch.isfinite(out).all()
    out.pow(2).mean().backward()
    assert x.grad is None  # rendering is not differentiable ...
    no_grad = {n for n, p in enc.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0}
    # ... the tower is, up to the selected layer (select_layer -2 of 2 leaves the last layer and
    # the post-layernorm out of the output)
    vm = "tower.model."
    assert no_grad == {n for n, _ in enc.named_parameters()
                       if n.startswith((vm + "encoder.layers.1.", vm + "post_layernorm."))}
    assert enc.tower.model.embeddings.patch_embedding.weight.grad.abs().sum() > 0

    enc.eval()
    with torch.no_grad():
        a, b = enc(x), enc(x.clone())
        other = enc(x.flip(0))
    assert torch.equal(a, b)  # same record, same pixels, same tokens
    # each record is read on its own (batch position only moves float rounding)
    assert torch.allclose(other[0], a[1], atol=1e-5) and not torch.allclose(a[0], a[1], atol=1e-3)


def test_ecg_image_resolve_is_complete_and_names_recipe_keys():
    cls = ECG_ENCODERS.get("ecg_image")
    arch, spec = cls.resolve({}, {})
    assert arch["tower"] == "clip" and arch["tower_arch"]["hidden_size"] == 768
    assert arch["tower_options"]["select_layer"] == -2 and arch["dpi"] == 30
    assert (spec.fs, spec.n_samples, spec.n_leads) == (500.0, 5000, 12)
    arch, _ = cls.resolve({"tiny": True, "tower_arch": {"image_size": 64},
                           "tower_options": {"select_feature": "cls_patch"}}, {})
    assert arch["tower_arch"]["hidden_size"] == 32 and cls(arch, spec).num_tokens == 17  # 4 x 4 + CLS
    assert json.loads(json.dumps(arch)) == arch  # goes into config.json as is

    cases = [
        ({"tiny": True, "towr": "clip"}, {}, "model.ecg.arch: unknown keys \\['towr'\\]"),
        ({"tiny": True, "tower": "clipp"}, {}, "model.ecg.arch.tower: unknown vision tower 'clipp'"),
        ({"tiny": True, "tower_options": {"select_layer": 9}}, {},
         "model.ecg.arch.tower_options.select_layer: 9 is out of range"),
        ({"tiny": True, "dpi": 5}, {}, "model.ecg.arch.dpi: 5 must be"),
        ({"tiny": True, "grid_color": "plaid"}, {}, "model.ecg.arch.grid_color: .*plaid"),
        ({"tiny": True}, {"leads": ["I", "II", "V1"]}, "model.ecg.signal.leads: .*12 standard leads"),
    ]
    for arch, signal, message in cases:
        with pytest.raises(ConfigError, match=message):
            cls(*cls.resolve(arch, signal))  # layer ranges are checked when the tower is built


def test_ecg_image_weights_from_a_file_and_a_folder(tmp_path):
    from safetensors.torch import save_file

    src, dst = encoder("ecg_image"), encoder("ecg_image")
    with torch.no_grad():
        for p in src.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    # a bare HF CLIPVisionModel state dict in a file, in the current and the older
    # ("vision_model."-prefixed, as in whole CLIPModel files) layout, text weights ignored ...
    bare = {k: v.contiguous() for k, v in src.tower.model.state_dict().items()}
    legacy = {**{f"vision_model.{k}": v for k, v in bare.items()}, "text_model.final_layer_norm.weight": torch.ones(8)}
    for name, state in (("w.safetensors", bare), ("legacy.safetensors", legacy)):
        dst = encoder("ecg_image")
        save_file(state, str(tmp_path / name))
        dst.load_pretrained(str(tmp_path / name))
        assert all(torch.equal(v, dst.tower.state_dict()[k]) for k, v in src.tower.state_dict().items())
    # ... and an HF folder, through the tower's own loader
    src.tower.model.save_pretrained(tmp_path / "clip")
    cls = ECG_ENCODERS.get("ecg_image")
    arch, spec = cls.resolve({}, {"fs": 100.0, "n_samples": 1000}, path=str(tmp_path / "clip"))
    assert arch["tower_arch"]["hidden_size"] == 32  # the folder's config, not the full-size default
    other = cls(arch, spec)
    other.load_pretrained(str(tmp_path / "clip"))
    x = signals()
    with torch.no_grad():
        assert torch.equal(src.eval()(x), other.eval()(x))
    save_file({"post_layernorm.weight": torch.ones(32)}, str(tmp_path / "part.safetensors"))
    with pytest.raises(ConfigError, match="model.ecg.path: .* lacks weights"):
        dst.load_pretrained(str(tmp_path / "part.safetensors"))


def test_ecg_image_trains_inside_the_full_model_and_round_trips(tiny_data, tokenizer, tmp_path):
    from transformers import AutoModelForCausalLM

    from gemfactory.data.dataset import Collator, GemDataset
    from gemfactory.data.processor import Processor
    from gemfactory.model.builder import build_model
    from gemfactory.model.checkpoint import save_checkpoint
    from gemfactory.registry import TEMPLATES

    rec = recipe(tiny_data, tmp_path, ecg={"name": "ecg_image", "arch": {"tiny": True}})
    torch.manual_seed(0)
    model = build_model(rec.model, tokenizer)
    enc = model.ecg_encoder
    assert type(enc).__name__ == "ECGImageEncoder" and model.modality_tokens() == {"image": 4, "ecg": 4}
    # the model's init reached the nested tower: CLIP's own scheme, nothing left uninitialised
    emb = enc.tower.model.embeddings
    assert all(torch.isfinite(p).all() for p in enc.parameters())
    assert emb.class_embedding.std() > 0 and emb.position_embedding.weight.std() > 0

    proc = Processor.from_model(model, tokenizer, TEMPLATES.get("vicuna_v1")(), 256)
    ds = GemDataset(rec.data.train, proc, rec.data.image_folder, rec.data.ecg_folder)
    kinds = {}
    for i, item in enumerate(ds.items):
        kinds.setdefault((bool(item.get("image")), bool(item.get("ecg"))), i)
    assert len(kinds) == 4
    batch = Collator(tokenizer.pad_token_id)([ds[i] for i in kinds.values()])
    assert batch["ecg"].shape == (2, 12, 1000)
    assert (batch["input_ids"] == model.config.ecg_token_id).sum().item() == 2 * enc.num_tokens

    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    loss = model(**batch).loss
    loss.backward()
    assert torch.isfinite(loss)
    patch = enc.tower.model.embeddings.patch_embedding.weight
    assert patch.grad is not None and patch.grad.abs().sum() > 0
    assert model.connectors["ecg"].weight.grad.abs().sum() > 0
    before = patch.detach().clone()
    opt.step()
    opt.zero_grad()
    assert not torch.equal(before, patch)
    with torch.no_grad():
        assert model(**batch).loss < loss

    folder = save_checkpoint(model, tokenizer, tmp_path / "ckpt", rec.to_dict())
    saved = json.loads((folder / "config.json").read_text())["ecg"]
    assert saved["name"] == "ecg_image" and saved["arch"] == enc.arch
    loaded = AutoModelForCausalLM.from_pretrained(folder)
    assert loaded.modality_tokens() == model.modality_tokens()
    model.eval(), loaded.eval()
    with torch.no_grad():
        assert torch.allclose(model(**batch).logits, loaded(**batch).logits, atol=1e-6, rtol=0)


# vit1d from ECG-CoCa / open_clip checkpoints --------------------------------------------------------
VIT_ARCH = {"tiny": True, "width": 32, "layers": 2, "heads": 2}


def coca_state(tower_prefix="visual.", text="coca", seed=1):
    """A state dict laid out like an open_clip / ECG-CoCa checkpoint: the 1D tower under
    ``tower_prefix`` with open_clip block names, next to text-tower and decoder weights."""
    ref = encoder("vit1d", VIT_ARCH)
    gen = torch.Generator().manual_seed(seed)
    state, names = {}, {}
    for key, value in ref.state_dict().items():
        theirs = key.replace("blocks.", "transformer.resblocks.", 1) if key.startswith("blocks.") else key
        state[tower_prefix + theirs] = torch.randn(value.shape, generator=gen)
        names[key] = tower_prefix + theirs
    state[tower_prefix + "proj"] = torch.randn(32, 16, generator=gen)  # contrastive head: unused
    if text == "coca":  # CoCa: text tower under "text.", captioning decoder under "text_decoder."
        state.update({
            "text.token_embedding.weight": torch.randn(64, 16, generator=gen),
            "text.positional_embedding": torch.randn(77, 16, generator=gen),
            "text.transformer.resblocks.0.ln_1.weight": torch.randn(16, generator=gen),
            "text.transformer.resblocks.0.attn.in_proj_weight": torch.randn(48, 16, generator=gen),
            "text.ln_final.weight": torch.randn(16, generator=gen),
            "text.text_projection": torch.randn(16, 16, generator=gen),
            "text_decoder.resblocks.0.ln_1.weight": torch.randn(32, generator=gen),
            "text_decoder.cross_attn.0.ln_1_kv.weight": torch.randn(32, generator=gen),
        })
    else:  # plain open_clip CLIP: the text tower's weights sit at the top level
        state.update({
            "token_embedding.weight": torch.randn(64, 32, generator=gen),
            "positional_embedding": torch.randn(77, 32, generator=gen),
            "transformer.resblocks.0.ln_1.weight": torch.randn(32, generator=gen),
            "transformer.resblocks.0.ln_1.bias": torch.randn(32, generator=gen),
            "ln_final.weight": torch.randn(32, generator=gen),
            "text_projection": torch.randn(32, 16, generator=gen),
        })
    state["logit_scale"] = torch.tensor(4.6)
    return state, names


@pytest.mark.parametrize("case", [
    "coca_pt",  # open_clip CoCa training checkpoint: {"state_dict": {"module.visual...": ...}}
    "coca_safetensors",  # the same weights, flat, as safetensors
    "ecg_chat_pt",  # ECG-Chat's CoCa keeps the tower as "ecg."
    "clip_top_level_text",  # text "transformer.resblocks." collide
])
def test_vit1d_reads_an_ecg_coca_checkpoint(case, tiny_data, tokenizer, tmp_path):
    from safetensors.torch import save_file

    from gemfactory.model.builder import build_model

    prefix = "ecg." if case == "ecg_chat_pt" else "visual."
    state, names = coca_state(prefix, text="clip" if case == "clip_top_level_text" else "coca")
    if case == "coca_safetensors":
        path = tmp_path / "ecg_coca.safetensors"
        save_file(state, str(path))
    else:
        path = tmp_path / "ecg_coca.pt"
        torch.save({"epoch": 10, "name": "coca_ViT-B-32",
                    "state_dict": {"module." + k: v for k, v in state.items()}}, path)
    rec = recipe(tiny_data, tmp_path, vision=None, connectors={"ecg": {"name": "linear"}},
                 ecg={"name": "vit1d", "arch": VIT_ARCH, "path": str(path)})
    model = build_model(rec.model, tokenizer)
    got = model.ecg_encoder.state_dict()
    assert set(got) == set(names)
    for ours, theirs in names.items():
        assert torch.equal(got[ours], state[theirs]), ours


def test_vit1d_checkpoint_without_encoder_weights_is_a_config_error(tiny_data, tokenizer, tmp_path):
    from gemfactory.model.builder import build_model

    state, _ = coca_state()
    state = {k: v for k, v in state.items() if not k.startswith("visual.")}  # a text-only checkpoint
    state["visual.conv1.weight"] = torch.zeros(32, 12, 50)
    torch.save({"state_dict": state}, tmp_path / "text_only.pt")
    rec = recipe(tiny_data, tmp_path, vision=None, connectors={"ecg": {"name": "linear"}},
                 ecg={"name": "vit1d", "arch": VIT_ARCH, "path": str(tmp_path / "text_only.pt")})
    with pytest.raises(ConfigError, match="^model.ecg.path: .*text_only.pt lacks weights for"):
        build_model(rec.model, tokenizer)


def test_vit1d_checkpoint_of_another_shape_is_a_config_error(tiny_data, tokenizer, tmp_path):
    from gemfactory.model.builder import build_model

    state, _ = coca_state()  # made for 1000 samples: 20 patches + CLS positions
    torch.save(state, tmp_path / "ecg_coca.pt")
    rec = recipe(tiny_data, tmp_path, vision=None, connectors={"ecg": {"name": "linear"}},
                 ecg={"name": "vit1d", "arch": VIT_ARCH, "path": str(tmp_path / "ecg_coca.pt"),
                      "signal": {"n_samples": 500}})
    with pytest.raises(ConfigError, match="^model.ecg.path: .* does not fit .*positional_embedding: \\(21, 32\\)"):
        build_model(rec.model, tokenizer)


# the signal spec travels with the checkpoint ---------------------------------------------------------
def test_loaded_checkpoint_carries_its_signal_spec(tiny_data, tokenizer, tmp_path):
    from gemfactory.data.ecg_io import write_ecg
    from gemfactory.data.synth import simulate_ecg
    from gemfactory.ecg.spec import STANDARD_LEADS, SignalSpec
    from gemfactory.infer.load import load_pretrained_model
    from gemfactory.model.builder import build_model
    from gemfactory.model.checkpoint import save_checkpoint

    signal = {"normalisation": "zscore", "allow_derived_leads": False}
    rec = recipe(tiny_data, tmp_path, vision=None, connectors={"ecg": {"name": "linear"}},
                 ecg={"name": "vit1d", "arch": {"tiny": True, "width": 32, "layers": 1, "heads": 2},
                      "signal": signal})
    model = build_model(rec.model, tokenizer)
    folder = save_checkpoint(model, tokenizer, tmp_path / "ckpt", rec.to_dict())
    saved = SignalSpec.from_dict(json.loads((folder / "config.json").read_text())["ecg"]["signal"])
    assert (saved.fs, saved.n_samples, saved.normalisation, saved.allow_derived_leads) == (100.0, 1000, "zscore", False)

    loaded = load_pretrained_model(folder)
    assert loaded.signal_spec == saved == model.ecg_encoder.signal_spec
    assert loaded.processor.signal_spec == saved and loaded.model.ecg_encoder.signal_spec == saved

    sig = simulate_ecg(70, fs=500, rng=0)  # a 500 Hz record is resampled to the spec's 100 Hz
    write_ecg(tmp_path / "rec" / "full", sig, 500, STANDARD_LEADS)
    x = loaded.processor.load_ecg(tmp_path / "rec" / "full")
    assert x.shape == (12, 1000) and abs(float(x.mean())) < 1e-3  # z-scored per lead
    limb = [STANDARD_LEADS.index(name) for name in ("I", "II", "V1", "V2", "V3", "V4", "V5", "V6")]
    write_ecg(tmp_path / "rec" / "no_limb", sig[limb], 500, [STANDARD_LEADS[i] for i in limb])
    with pytest.raises(ECGError, match="missing leads .*derived leads are disabled"):
        loaded.processor.load_ecg(tmp_path / "rec" / "no_limb")
    write_ecg(tmp_path / "rec" / "three", sig[6:9], 500, ["V1", "V2", "V3"])
    with pytest.raises(ECGError, match="missing leads \\['I', 'II', 'III'"):
        loaded.processor.load_ecg(tmp_path / "rec" / "three")
