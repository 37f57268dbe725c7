"""``gemfactory import --from FORMAT``: random tiny weights written as each seed writes them, imported,
and logits compared with a reference forward (float32, <= 1e-5).

References: transformers' classes where the format has one: ``LlavaForConditionalGeneration`` for
llava-hf, and for original LLaVA-1.5 after renaming the seed's keys with the table of transformers'
``convert_llava_weights_to_hf.py`` (KEYS_TO_MODIFY_MAPPING); ``VipLlavaForConditionalGeneration``
for ViP-LLaVA (same table plus the projector renames of ``convert_vipllava_weights_to_hf.py``).
TinyLLaVA and GEM have no transformers class: their references are HF parts (PhiForCausalLM /
LlamaForCausalLM, SiglipVisionModel / CLIPVisionModel, nn.Sequential projectors named as in the seeds)
run as the seeds' forward does: hidden state ``vision_feature_layer``, TinyLLaVA's ``patch`` strategy
dropping token 0, GEM's ``encode_ecgs`` (open_clip ECG transformer up to the last block, then
ecg_projector, then mm_projector) and ``prepare_inputs_labels_for_multimodal`` splicing the features
(GEM: ECG tokens, then image tokens) in at the -200 placeholder.
"""
from __future__ import annotations

import json
import re
from collections import OrderedDict

import pytest
import torch
from torch import nn

from gemfactory.cli import main

V = 64  # the seeds' tokenizer vocabulary in these tests
TEXT_BEFORE, TEXT_AFTER = [1, 5, 6, 9], [7, 8, 11, 12, 3]
IMAGE_INDEX = -200  # LLaVA's IMAGE_TOKEN_INDEX


def tokenizer(folder, extra=()):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    specials = ["<unk>", "<s>", "</s>", "<pad>"]
    tok.train_from_iterator(["a curious human asks the assistant about the picture"] * 4,
                            trainers.BpeTrainer(vocab_size=V, special_tokens=specials, show_progress=False,
                                                initial_alphabet=pre_tokenizers.ByteLevel.alphabet()[:40]))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>",
                                   pad_token="<pad>")
    if extra:
        fast.add_special_tokens({"additional_special_tokens": list(extra)})
    fast.save_pretrained(folder)
    return fast


def llama_config(vocab=V):
    from transformers import LlamaConfig

    return LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                       num_key_value_heads=2, vocab_size=vocab, max_position_embeddings=128)


def clip_config(layers=3):
    from transformers import CLIPVisionConfig

    return CLIPVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=layers, num_attention_heads=2,
                            image_size=32, patch_size=16)


def save_weights(state: dict, folder) -> None:
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in state.items()}, str(folder / "model.safetensors"))


def prefixed(prefix: str, module: nn.Module) -> dict:
    return {prefix + k: v for k, v in module.state_dict().items()}


def mlp2x(in_dim, out_dim):  # build_vision_projector's mlp2x_gelu
    return nn.Sequential(nn.Linear(in_dim, out_dim), nn.GELU(), nn.Linear(out_dim, out_dim))


def imported(fmt, src, out, *extra):
    from gemfactory.model.modeling import GemForCausalLM

    assert main(["-q", "import", "--from", fmt, str(src), str(out), *extra]) == 0
    return GemForCausalLM.from_pretrained(out).eval()


def gem_ids(model, n_image, n_ecg=0):
    cfg = model.config
    slots = [cfg.ecg_token_id] * n_ecg + [cfg.image_token_id] * n_image
    return torch.tensor([TEXT_BEFORE + slots + TEXT_AFTER])


def splice_logits(lm, feats):
    """LLaVA's prepare_inputs_labels_for_multimodal for one sample: text embeddings around -200,
    the features spliced in at its place."""
    embed = lm.get_input_embeddings()
    embeds = torch.cat([embed(torch.tensor(TEXT_BEFORE)), feats, embed(torch.tensor(TEXT_AFTER))])
    return lm(inputs_embeds=embeds[None]).logits


def close(ours, ref):
    ours = ours[..., :ref.shape[-1]]  # gemfactory's vocabulary adds <image>/<ecg> rows
    assert ours.shape == ref.shape
    assert (ours - ref).abs().max().item() <= 1e-5


# transformers' convert_llava_weights_to_hf.py KEYS_TO_MODIFY_MAPPING, applied in its order (4.x names;
# from_pretrained renames them to 5.x with conversion_mapping.py); the ViP rows follow
# convert_vipllava_weights_to_hf.py
HF_CONVERSION = [
    ("model.vision_tower.", ""), ("model.mm_projector", "multi_modal_projector"), ("model", "model.model"),
    ("vision_model.model", "vision_model"), ("lm_head", "language_model.lm_head"),
    ("model.model", "language_model.model"), ("multi_modal_projector.0", "multi_modal_projector.linear_1"),
    ("multi_modal_projector.2", "multi_modal_projector.linear_2"),
]
VIP_CONVERSION = [("final_linear.0", "linear_1"), ("final_linear.2", "linear_2"),
                  ("multi_modal_projector.clip_layernorm", "multi_modal_projector.projector_layernorm")]


def hf_names(state: dict, table) -> dict:
    out = {}
    for key, value in state.items():
        for old, new in table:
            if old in key:
                key = key.replace(old, new)
        out[key] = value
    return out


def original_llava(src, vision_in_file: bool, vip: bool):
    """A LlavaLlamaForCausalLM folder: config.json with LLaVA's fields, weights named as it saves them."""
    from transformers import CLIPVisionModel, LlamaForCausalLM

    torch.manual_seed(0)
    src.mkdir()
    tokenizer(src)
    lm, tower = LlamaForCausalLM(llama_config()), CLIPVisionModel(clip_config(12 if vip else 3))
    width = 16 * (5 if vip else 1)
    projector = mlp2x(width, 32)
    state = {**prefixed("", lm)}
    if vip:  # SimpleFeatureSingleModel(clip_layernorm, final_linear)
        norm = nn.LayerNorm(width)
        nn.init.normal_(norm.weight, 1.0, 0.2)
        nn.init.normal_(norm.bias, 0.0, 0.2)
        state.update(prefixed("model.mm_projector.clip_layernorm.", norm))
        state.update(prefixed("model.mm_projector.final_linear.", projector))
    else:
        state.update(prefixed("model.mm_projector.", projector))
    if vision_in_file:
        state.update(prefixed("model.vision_tower.vision_tower.", tower))
    save_weights(state, src)
    clip_dir = src.parent / "clip"
    tower.save_pretrained(clip_dir)
    config = {**lm.config.to_dict(), "model_type": "llava_llama", "architectures": ["LlavaLlamaForCausalLM"],
              "mm_vision_tower": "clip_4layers_336" if vip else str(clip_dir), "mm_projector_type": "mlp2x_gelu",
              "mm_hidden_size": width, "mm_vision_select_layer": -2, "mm_vision_select_feature": "patch",
              "mm_patch_merge_type": "flat", "image_aspect_ratio": "pad", "use_mm_proj": True,
              "mm_use_im_start_end": False, "mm_use_im_patch_token": False, "tune_mm_mlp_adapter": False}
    (src / "config.json").write_text(json.dumps(config))
    return state, lm, tower, clip_dir


def hf_reference(state, lm, tower, folder, vip: bool):
    """The seed's weights renamed by transformers' conversion table, loaded by transformers' class."""
    from transformers import (
        LlavaConfig,
        LlavaForConditionalGeneration,
        VipLlavaConfig,
        VipLlavaForConditionalGeneration,
    )

    state = dict(state)
    if not any(k.startswith("model.vision_tower.") for k in state):
        state.update(prefixed("model.vision_tower.vision_tower.", tower))  # the seed loads it from mm_vision_tower
    hf_state = hf_names(state, HF_CONVERSION + (VIP_CONVERSION if vip else []))
    common = dict(text_config=lm.config.to_dict(), vision_config=tower.config.to_dict(), image_token_index=V)
    config = VipLlavaConfig(**common) if vip else LlavaConfig(**common, vision_feature_layer=-2)
    folder.mkdir()
    config.save_pretrained(folder)
    save_weights(hf_state, folder)
    cls = VipLlavaForConditionalGeneration if vip else LlavaForConditionalGeneration
    ref = cls.from_pretrained(folder).eval()
    ref.resize_token_embeddings(V + 1)  # as the conversion script pads for <image>; the row is replaced
    return ref


def run_hf(ref, n_tokens, pixels):
    ids = torch.tensor([TEXT_BEFORE + [V] * n_tokens + TEXT_AFTER])
    return ref(input_ids=ids, pixel_values=pixels).logits


@pytest.mark.parametrize("vip", [False, True], ids=["llava", "vip-llava"])
def test_original_llava_and_vip_match_transformers(tmp_path, vip):
    state, lm, tower, clip_dir = original_llava(tmp_path / "seed", vision_in_file=vip, vip=vip)
    ref = hf_reference(state, lm, tower, tmp_path / "hf", vip)
    extra = ["--vision-tower", str(clip_dir)] if vip else []  # ViP reads openai/clip-vit-large-patch14-336
    ours = imported("vip-llava" if vip else "llava", tmp_path / "seed", tmp_path / "out", *extra)
    assert ours.config.vision["options"]["layers" if vip else "select_layer"] == ([-2, -5, -8, -11, 6] if vip else -2)
    pixels = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        close(ours(input_ids=gem_ids(ours, 4), pixel_values=pixels).logits, run_hf(ref, 4, pixels))


def qwen2_tied_config(vocab):
    from transformers import Qwen2Config

    return Qwen2Config(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                       num_key_value_heads=1, vocab_size=vocab, tie_word_embeddings=True, max_position_embeddings=128)


def siglip_config():
    from transformers import SiglipVisionConfig

    return SiglipVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=3, num_attention_heads=2,
                              image_size=32, patch_size=16)


@pytest.mark.parametrize("layer,strategy,n_tokens,text,vision", [
    (-2, "default", 4, llama_config, clip_config), ([-3, -1], "full", 5, llama_config, clip_config),
    (-2, "full", 4, qwen2_tied_config, siglip_config)], ids=["clip-default", "clip-layers-full", "qwen2-tied-siglip"])
def test_llava_hf_matches_transformers(tmp_path, layer, strategy, n_tokens, text, vision):
    from transformers import LlavaConfig, LlavaForConditionalGeneration

    torch.manual_seed(1)
    src = tmp_path / "seed"
    tokenizer(src, extra=["<image>"])
    config = LlavaConfig(text_config=text(V + 1).to_dict(), vision_config=vision().to_dict(),
                         image_token_index=V, vision_feature_layer=layer, vision_feature_select_strategy=strategy,
                         tie_word_embeddings=text is qwen2_tied_config)
    ref = LlavaForConditionalGeneration(config).eval()
    ref.save_pretrained(src)
    (src / "preprocessor_config.json").write_text(json.dumps({"do_pad": True, "image_mean": [0.5] * 3,
                                                              "image_std": [0.25] * 3}))
    ours = imported("llava-hf", src, tmp_path / "out")
    assert ours.config.image_token_id == V and ours.config.vision["options"]["image_mean"] == [0.5] * 3
    pixels = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        close(ours(input_ids=gem_ids(ours, n_tokens), pixel_values=pixels).logits, run_hf(ref, n_tokens, pixels))
    # and back: export --format llava-hf gives transformers' class the same logits again
    assert main(["-q", "export", str(tmp_path / "out"), str(tmp_path / "back"), "--format", "llava-hf"]) == 0
    back = LlavaForConditionalGeneration.from_pretrained(tmp_path / "back").eval()
    assert back.config.vision_feature_layer == layer and back.config.vision_feature_select_strategy == strategy
    with torch.no_grad():
        close(run_hf(back, n_tokens, pixels), run_hf(ref, n_tokens, pixels))


def test_vip_llava_saved_by_transformers_matches_it(tmp_path):
    from transformers import VipLlavaConfig, VipLlavaForConditionalGeneration

    torch.manual_seed(4)
    src = tmp_path / "seed"
    tokenizer(src, extra=["<image>"])
    config = VipLlavaConfig(text_config=llama_config(V + 1).to_dict(), vision_config=clip_config(12).to_dict(),
                            image_token_index=V)
    ref = VipLlavaForConditionalGeneration(config).eval()
    with torch.no_grad():  # a layernorm that is not the identity
        ref.model.multi_modal_projector.projector_layernorm.weight.normal_(1.0, 0.2)
    ref.save_pretrained(src)
    ours = imported("vip-llava", src, tmp_path / "out")
    assert ours.config.vision["options"]["layers"] == [-2, -5, -8, -11, 6]
    pixels = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        close(ours(input_ids=gem_ids(ours, 4), pixel_values=pixels).logits, run_hf(ref, 4, pixels))


@pytest.mark.parametrize("layout", ["whole", "parts"])
def test_tinyllava_phi_siglip_matches_seed_forward(tmp_path, layout):
    from transformers import PhiConfig, PhiForCausalLM, SiglipVisionConfig, SiglipVisionModel

    torch.manual_seed(2)
    src = tmp_path / "seed"
    tokenizer(src)
    phi = PhiForCausalLM(PhiConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                                   vocab_size=V, max_position_embeddings=128)).eval()
    siglip = SiglipVisionModel(SiglipVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=3,
                                                  num_attention_heads=2, image_size=32, patch_size=8)).eval()
    connector = mlp2x(16, 32)
    if layout == "whole":  # TinyLlavaForConditionalGeneration.save_pretrained
        save_weights({**prefixed("language_model.", phi), **prefixed("vision_tower._vision_tower.", siglip),
                      **prefixed("connector._connector.", connector)}, src)
    else:  # training_recipe/base.py save(): each part's named_parameters in its own folder
        for part, module in (("language_model", phi), ("vision_tower", siglip), ("connector", nn.Module())):
            (src / part).mkdir()
            if part == "connector":
                module._connector = connector
            torch.save(dict(module.named_parameters()), src / part / "pytorch_model.bin")
    (src / "config.json").write_text(json.dumps({
        "model_type": "tinyllava", "architectures": ["TinyLlavaForConditionalGeneration"],
        "llm_model_name_or_path": "microsoft/phi-2", "connector_type": "mlp2x_gelu",
        "text_config": phi.config.to_dict(), "vision_config": siglip.config.to_dict(),
        "vision_feature_layer": -2, "vision_feature_select_strategy": "patch", "image_aspect_ratio": "pad"}))
    ours = imported("tinyllava", src, tmp_path / "out")
    pixels = torch.randn(1, 3, 32, 32)
    with torch.no_grad():  # vision_tower/base.py forward: hidden_states[-2][:, 1:] (token 0 dropped on SigLIP too)
        feats = connector(siglip(pixels, output_hidden_states=True).hidden_states[-2][:, 1:])[0]
        ref = splice_logits(phi, feats)
        close(ours(input_ids=gem_ids(ours, 15), pixel_values=pixels).logits, ref)


class EcgTower(nn.Module):
    """GEM's open_clip ECG transformer, names and forward up to ``output_last_transformer_layer``."""

    def __init__(self, width=768, layers=1, heads=12, patch=50, n_samples=500):
        super().__init__()
        self.conv1 = nn.Conv1d(12, width, patch, patch, bias=False)
        self.class_embedding = nn.Parameter(torch.randn(width) * width ** -0.5)
        self.positional_embedding = nn.Parameter(torch.randn(n_samples // patch + 1, width) * width ** -0.5)
        self.ln_pre = nn.LayerNorm(width)
        self.transformer = nn.Module()
        self.transformer.resblocks = nn.ModuleList(self._block(width, heads) for _ in range(layers))
        self.ln_post = nn.LayerNorm(width)
        self.proj = nn.Parameter(torch.randn(width, 16))

    @staticmethod
    def _block(width, heads):
        block = nn.Module()
        block.ln_1, block.ln_2 = nn.LayerNorm(width), nn.LayerNorm(width)
        block.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        block.mlp = nn.Sequential(OrderedDict(c_fc=nn.Linear(width, 4 * width), gelu=nn.GELU(),
                                              c_proj=nn.Linear(4 * width, width)))
        return block

    def forward(self, x):
        x = self.conv1(x).permute(0, 2, 1)
        x = torch.cat([self.class_embedding.expand(x.shape[0], 1, -1), x], dim=1) + self.positional_embedding
        x = self.ln_pre(x)
        for b in self.transformer.resblocks:
            h = b.ln_1(x)
            x = x + b.attn(h, h, h, need_weights=False)[0]
            x = x + b.mlp(b.ln_2(x))
        return x  # output_last_transformer_layer=True: before ln_post


@pytest.mark.parametrize("ecg_in_file", [True, False], ids=["ecg-tower-saved", "ecg-tower-from-mm_ecg_tower"])
def test_gem_matches_seed_forward(tmp_path, ecg_in_file):
    from transformers import CLIPVisionModel, LlamaForCausalLM

    torch.manual_seed(3)
    src = tmp_path / "seed"
    tokenizer(src)
    lm, tower, ecg = LlamaForCausalLM(llama_config()).eval(), CLIPVisionModel(clip_config()).eval(), EcgTower().eval()
    mm_projector, ecg_projector = mlp2x(16, 32), nn.Linear(768, 16)  # build_ecg_projector: Linear(768, mm_hidden)
    state = {**prefixed("", lm), **prefixed("model.mm_projector.", mm_projector),
             **prefixed("model.vision_tower.vision_tower.", tower), **prefixed("model.ecg_projector.", ecg_projector)}
    coca = tmp_path / "ecg_coca.pt"
    if ecg_in_file:
        state.update(prefixed("model.ecg_tower.ecg_tower.", ecg))
    else:  # an ECG-CoCa training checkpoint as get_ecg_encoder reads it: state_dict, module.ecg.* (+ text tower)
        torch.save({"state_dict": {**prefixed("module.ecg.", ecg), "module.text.w": torch.zeros(2)}}, coca)
    save_weights(state, src)
    (src / "config.json").write_text(json.dumps({
        **lm.config.to_dict(), "model_type": "llava_llama", "architectures": ["LlavaLlamaForCausalLM"],
        "mm_vision_tower": str(tmp_path / "clip"), "mm_ecg_tower": str(coca),
        "open_clip_config": "coca_ViT-B-32", "ecg_projector_type": "linear", "mm_projector_type": "mlp2x_gelu",
        "mm_hidden_size": 16, "mm_vision_select_layer": -2, "mm_patch_merge_type": "flat",
        "image_aspect_ratio": "pad"}))
    (src / "open_clip_config.json").write_text(json.dumps({"ecg_cfg": {"seq_length": 500, "lead_num": 12, "layers": 1,
                                                                        "width": 768, "patch_size": 50}}))
    tower.save_pretrained(tmp_path / "clip")
    ours = imported("gem", src, tmp_path / "out")
    assert ours.config.layout == "gem" and ours.config.ecg["arch"]["output"] == "pre_ln_post"
    pixels, signal = torch.randn(1, 3, 32, 32), torch.randn(1, 12, 500)
    with torch.no_grad():  # encode_ecgs, encode_images, then ECG tokens before image tokens at <image>
        ecg_feats = mm_projector(ecg_projector(ecg(signal)))[0]
        image_feats = mm_projector(tower(pixels, output_hidden_states=True).hidden_states[-2][:, 1:])[0]
        ref = splice_logits(lm, torch.cat([ecg_feats, image_feats]))
        got = ours(input_ids=gem_ids(ours, 4, n_ecg=11), pixel_values=pixels, ecg=signal).logits
    close(got, ref)


# clear errors ------------------------------------------------------------------------------------------
@pytest.fixture
def llava_seed(tmp_path):
    original_llava(tmp_path / "seed", vision_in_file=True, vip=False)
    return tmp_path / "seed"


def run_cli(capsys, *argv):
    capsys.readouterr()
    code = main(["-q", "import", *argv])
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    return code, "\n".join(errors)


def test_wrong_format_names_the_right_one(llava_seed, tmp_path, capsys):
    code, err = run_cli(capsys, "--from", "llava-hf", str(llava_seed), str(tmp_path / "o"))
    assert code == 2 and err == (f"error: {llava_seed}: not a llava-hf checkpoint (config.json: "
                                 "['LlavaLlamaForCausalLM']); it looks like --from llava")
    code, err = run_cli(capsys, "--from", "llava-next", str(llava_seed), str(tmp_path / "o"))
    assert code == 2 and "import format 'llava-next'" in err and "\n" not in err


def _rewrite(folder, edit):
    from safetensors.torch import load_file

    state = load_file(str(folder / "model.safetensors"))
    edit(state)
    save_weights(state, folder)


def test_key_mismatch_names_first_unexpected_and_missing(llava_seed, tmp_path, capsys):
    def edit(state):
        state["model.mm_projector.3.weight"] = state.pop("model.mm_projector.2.weight")
        state["model.vision_resampler.w"] = torch.zeros(1)

    _rewrite(llava_seed, edit)
    code, err = run_cli(capsys, "--from", "llava", str(llava_seed), str(tmp_path / "o"))
    assert code == 2 and err == (f"error: {llava_seed}: the weights do not fit the llava layout: 2 unexpected "
                                 "(first 'model.mm_projector.3.weight'), 1 missing (first 'connectors.image.2.weight')")
    assert not (tmp_path / "o").exists()


def test_missing_key_alone(llava_seed, tmp_path, capsys):
    _rewrite(llava_seed, lambda state: state.pop("model.norm.weight"))
    code, err = run_cli(capsys, "--from", "llava", str(llava_seed), str(tmp_path / "o"))
    assert code == 2 and err.endswith("0 unexpected (first none), 1 missing (first 'language_model.model.norm.weight')")


@pytest.mark.parametrize("field,value,says", [
    ("mm_patch_merge_type", "spatial_unpad", "mm_patch_merge_type = 'spatial_unpad': only 'flat'"),
    ("image_aspect_ratio", "anyres", "image_aspect_ratio = 'anyres': LLaVA-NeXT"),
    ("mm_projector_type", "qformer", "mm_projector_type = 'qformer': gemfactory has linear"),
])
def test_unsupported_field_is_refused_by_name(llava_seed, tmp_path, capsys, field, value, says):
    config = json.loads((llava_seed / "config.json").read_text())
    (llava_seed / "config.json").write_text(json.dumps({**config, field: value}))
    code, err = run_cli(capsys, "--from", "llava", str(llava_seed), str(tmp_path / "o"))
    assert code == 2 and err.startswith(f"error: {says}") and "\n" not in err


def test_every_format_has_a_parity_test():
    from gemfactory.formats import FORMATS

    tested = {"llava", "vip-llava", "llava-hf", "tinyllava", "gem"}
    assert set(FORMATS.names()) == tested
    from pathlib import Path

    assert re.search(r"^def test_gem_matches", Path(__file__).read_text(), re.MULTILINE)


# hub ids ---------------------------------------------------------------------------------------------
def cache_repo(cache, repo_id: str, folder) -> None:
    """``folder``'s files as huggingface_hub caches a repository: refs/main -> snapshots/COMMIT/."""
    import shutil

    storage = cache / f"models--{repo_id.replace('/', '--')}"
    commit = "0123456789abcdef0123456789abcdef01234567"
    shutil.copytree(folder, storage / "snapshots" / commit)
    (storage / "refs").mkdir(parents=True)
    (storage / "refs" / "main").write_text(commit)


def test_hub_ids_for_the_checkpoint_and_its_tower(tmp_path, monkeypatch, capsys):
    """A released LLaVA-1.5 layout (tower not in the weights, ``mm_vision_tower`` a repo id), both
    read offline from a hub cache."""
    state, lm, tower, clip_dir = original_llava(tmp_path / "seed", vision_in_file=False, vip=False)
    config = json.loads((tmp_path / "seed" / "config.json").read_text())
    (tmp_path / "seed" / "config.json").write_text(json.dumps({**config, "mm_vision_tower": "tiny-openai/clip"}))
    cache = tmp_path / "cache"
    cache_repo(cache, "tiny-liuhaotian/llava", tmp_path / "seed")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, err = run_cli(capsys, "--from", "llava", "tiny-liuhaotian/llava", str(tmp_path / "o"))
    assert code == 2 and err == (f"error: mm_vision_tower (or --vision-tower): Hugging Face repo tiny-openai/clip "
                                 f"(revision main) is not in the cache {cache} while HF_HUB_OFFLINE is set; fetch it "
                                 "with: hf download tiny-openai/clip (or run the import with HF_HUB_OFFLINE=0)")
    cache_repo(cache, "tiny-openai/clip", clip_dir)
    ref = hf_reference(state, lm, tower, tmp_path / "hf", vip=False)
    ours = imported("llava", "tiny-liuhaotian/llava", tmp_path / "out")
    pixels = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        close(ours(input_ids=gem_ids(ours, 4), pixel_values=pixels).logits, run_hf(ref, 4, pixels))


def test_seed_aspect_settings_map_to_the_preprocessing_the_seed_runs(tmp_path):
    """LLaVA / GEM hand any image_aspect_ratio but 'pad' to the tower's own processor: CLIP's resizes the
    shortest side and centre-crops, SigLIP's stretches to the square (gemfactory's crop / resize)."""
    from gemfactory.formats.base import aspect_from_seed, hf_image_aspect

    assert [aspect_from_seed(v) for v in ("pad", None, "square", "ori")] == ["pad", "pad", "crop", "crop"]
    assert aspect_from_seed("square", "siglip_vision_model") == "resize"
    for processor, aspect in (({"do_pad": True}, "pad"), ({"do_center_crop": True}, "crop"), ({}, "resize")):
        (tmp_path / "preprocessor_config.json").write_text(json.dumps(processor))
        assert hf_image_aspect(tmp_path)["image_aspect"] == aspect
