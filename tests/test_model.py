import torch
import pytest

from gemfactory.data.dataset import Collator, GemDataset
from gemfactory.data.processor import Processor
from gemfactory.errors import DataError
from gemfactory.model import GemForCausalLM
from gemfactory.model.checkpoint import save_checkpoint
from gemfactory.template.base import IGNORE_INDEX, Turn


@pytest.fixture(scope="module")
def batch(tiny_built, tiny_data):
    recipe, tok, model, template = tiny_built
    proc = Processor.from_model(model, tok, template, 256)
    ds = GemDataset(recipe.data.train, proc, recipe.data.image_folder, recipe.data.ecg_folder)
    kinds = {}
    for i in range(len(ds)):
        item = ds.items[i]
        kinds.setdefault((bool(item.get("image")), bool(item.get("ecg"))), i)
    assert len(kinds) == 4, "the synthetic data mixes text-only, image-only, ECG-only and ECG+image"
    feats = [ds[i] for i in kinds.values()]
    return Collator(tok.pad_token_id)(feats), feats


def test_mixed_batch_shapes_and_placeholder_expansion(tiny_built, batch):
    _, tok, model, _ = tiny_built
    b, feats = batch
    n_img = (b["input_ids"] == model.config.image_token_id).sum().item()
    n_ecg = (b["input_ids"] == model.config.ecg_token_id).sum().item()
    assert b["pixel_values"].shape == (2, 3, 32, 32)
    assert b["ecg"].shape == (2, 12, 1000)
    assert n_img == 2 * model.vision_tower.num_tokens == 2 * 4
    assert n_ecg == 2 * model.ecg_encoder.num_tokens == 2 * 21
    # placeholders and padding are never supervised
    placeholder = (b["input_ids"] == model.config.image_token_id) | (b["input_ids"] == model.config.ecg_token_id)
    assert (b["labels"][placeholder] == IGNORE_INDEX).all()
    assert (b["labels"][b["attention_mask"] == 0] == IGNORE_INDEX).all()
    out = model(**b)
    assert out.logits.shape[:2] == b["input_ids"].shape and torch.isfinite(out.loss)


def test_modality_features_land_at_placeholders(tiny_built, batch):
    _, tok, model, _ = tiny_built
    b, _ = batch
    with torch.no_grad():
        embeds = model.embed(b["input_ids"], b.get("pixel_values"), b.get("ecg"))
        ecg_feats = model.encode_ecg(b["ecg"])
    mask = b["input_ids"] == model.config.ecg_token_id
    assert torch.equal(embeds[mask], ecg_feats.reshape(-1, ecg_feats.shape[-1]))


def test_placeholder_count_mismatch_is_an_error(tiny_built, batch):
    _, _, model, _ = tiny_built
    b, _ = batch
    with pytest.raises(DataError, match="ecg placeholder tokens but no ecg input"):
        model.embed(b["input_ids"], b["pixel_values"], None)
    with pytest.raises(DataError, match="give 21 tokens, but the text has 42 ecg placeholder"):
        model.embed(b["input_ids"], b["pixel_values"], b["ecg"][:1])


def test_save_load_round_trip_gives_equal_logits(tiny_built, batch, tmp_path):
    from transformers import AutoModelForCausalLM

    recipe, tok, model, _ = tiny_built
    b, _ = batch
    folder = save_checkpoint(model, tok, tmp_path / "ckpt", recipe.to_dict())
    assert (folder / "model.safetensors").is_file() and (folder / "tokenizer.json").is_file()
    loaded = AutoModelForCausalLM.from_pretrained(folder)
    assert isinstance(loaded, GemForCausalLM)
    assert loaded.config.signal_spec == model.ecg_encoder.signal_spec
    assert loaded.config.template == "vicuna_v1"
    model.eval(), loaded.eval()
    with torch.no_grad():
        a, c = model(**b).logits, loaded(**b).logits
    assert torch.allclose(a, c, atol=0, rtol=0)
    assert not list(tmp_path.glob(".ckpt.tmp-*")), "temp folder left behind"


def test_a_few_steps_lower_the_loss(tiny_built, batch):
    import copy

    _, _, model, _ = tiny_built
    model = copy.deepcopy(model).train()
    b, _ = batch
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(8):
        loss = model(**b).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < 0.75 * losses[0], losses


def test_gem_layout_puts_ecg_tokens_before_image_tokens(tiny_built):
    _, tok, model, template = tiny_built
    proc = Processor.from_model(model, tok, template, 256)
    proc.layout = "gem"
    feats = proc.encode([Turn("user", "<image>\nInterpret."), Turn("assistant", "Normal.")],
                        has_image=True, has_ecg=True)
    ids = feats["input_ids"].tolist()
    first_ecg = ids.index(model.config.ecg_token_id)
    first_img = ids.index(model.config.image_token_id)
    assert first_ecg < first_img
    assert ids.count(model.config.ecg_token_id) == 21 and ids.count(model.config.image_token_id) == 4
    assert ids[first_ecg + 21] == model.config.image_token_id  # contiguous: ECG block then image block


def test_placeholder_checks_name_the_sample(tiny_built):
    _, tok, model, template = tiny_built
    proc = Processor.from_model(model, tok, template, 256)
    with pytest.raises(DataError, match="sample s1: the text has 0 <ecg> placeholder\\(s\\) but the sample has one ecg input"):
        proc.encode([Turn("user", "What?"), Turn("assistant", "x")], has_ecg=True, item_id="s1")
    with pytest.raises(DataError, match="sample s2: the text has 1 <image> placeholder\\(s\\) but the sample has no image"):
        proc.encode([Turn("user", "<image>\nWhat?"), Turn("assistant", "x")], item_id="s2")


def test_phi_family_builds_and_trains_a_step(tiny_data):
    from conftest import tiny_recipe
    from gemfactory.config import recipe_from_dict
    from gemfactory.model.builder import build_model, build_tokenizer
    from gemfactory.registry import TEMPLATES
    from gemfactory.data.recipe_tokenizer import tokenizer_texts as _tokenizer_texts

    raw = tiny_recipe(tiny_data, tiny_data / "runs-phi")
    raw["model"]["llm"] = {"name": "phi", "tokenizer_vocab_size": 400,
                           "arch": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                                    "num_attention_heads": 2}}
    raw["model"]["template"] = None
    recipe = recipe_from_dict(raw)
    tok = build_tokenizer(recipe.model, _tokenizer_texts(recipe, TEMPLATES.get("phi")()))
    assert tok.bos_token is None and tok.eos_token == "<|endoftext|>"
    model = build_model(recipe.model, tok)
    assert model.config.template == "phi" and model.config.text_config.model_type == "phi"
    proc = Processor.from_model(model, tok, TEMPLATES.get("phi")(), 256)
    ds = GemDataset(recipe.data.train, proc, recipe.data.image_folder, recipe.data.ecg_folder)
    b = Collator(tok.pad_token_id)([ds[i] for i in range(4)])
    loss = model(**b).loss
    loss.backward()
    assert torch.isfinite(loss)
    assert model.ecg_encoder.conv1.weight.grad is not None or "ecg" not in b


def test_gem_ecg_connector_feeds_the_shared_image_projector(tiny_data, tmp_path):
    from transformers import AutoModelForCausalLM

    from conftest import tiny_recipe
    from gemfactory.config import recipe_from_dict
    from gemfactory.errors import ConfigError
    from gemfactory.model.builder import build_model, build_tokenizer
    from gemfactory.registry import TEMPLATES
    from gemfactory.data.recipe_tokenizer import tokenizer_texts as _tokenizer_texts

    raw = tiny_recipe(tiny_data, tmp_path / "run")
    raw["model"]["connectors"] = {"image": {"name": "mlp2x_gelu"}, "ecg": {"name": "linear", "via": "image"}}
    recipe = recipe_from_dict(raw)
    tok = build_tokenizer(recipe.model, _tokenizer_texts(recipe, TEMPLATES.get("vicuna_v1")()))
    model = build_model(recipe.model, tok).eval()
    first = model.connectors["ecg"].first
    # the ECG connector owns only its Linear(ECG width -> tower width); the projector is the image one
    assert (first.in_features, first.out_features) == (model.ecg_encoder.hidden_size, model.vision_tower.hidden_size)
    names = [n for n, _ in model.named_parameters() if n.startswith("connectors.ecg")]
    assert names == ["connectors.ecg.first.weight", "connectors.ecg.first.bias"]
    signals = torch.randn(2, 12, 1000)
    with torch.no_grad():
        expected = model.connectors["image"](first(model.ecg_encoder(signals)))
        assert torch.equal(model.encode_ecg(signals), expected)
    folder = save_checkpoint(model, tok, tmp_path / "ckpt")
    loaded = AutoModelForCausalLM.from_pretrained(folder).eval()
    with torch.no_grad():
        assert torch.equal(loaded.encode_ecg(signals), expected)
    bad = dict(raw, model={**raw["model"], "connectors": {"image": {"name": "linear"},
                                                          "ecg": {"name": "linear", "via": "ecg"}}})
    with pytest.raises(ConfigError, match="model.connectors.ecg.via: 'ecg' must name the other modality"):
        recipe_from_dict(bad)


def test_llm_and_clip_weights_load_from_local_hf_folders(tiny_built, tmp_path):
    """Real checkpoints go through the same code: save HF folders, point the recipe at them."""
    from transformers import CLIPVisionConfig, CLIPVisionModel, LlamaConfig, LlamaForCausalLM

    from gemfactory.config import recipe_from_dict
    from gemfactory.model.builder import build_model
    from gemfactory.data.recipe_tokenizer import tokenizer_for_recipe

    recipe, tok, _, _ = tiny_built
    torch.manual_seed(1)
    llm = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                                       num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2))
    llm.save_pretrained(tmp_path / "llm")
    tok.save_pretrained(tmp_path / "llm")
    tower = CLIPVisionModel(CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                             num_attention_heads=2, image_size=32, patch_size=16))
    tower.save_pretrained(tmp_path / "clip")
    raw = recipe.to_dict()
    raw["model"]["llm"] = {"name": "vicuna", "path": str(tmp_path / "llm")}
    raw["model"]["vision"] = {"name": "clip", "path": str(tmp_path / "clip")}
    r = recipe_from_dict(raw)
    model = build_model(r.model, tokenizer_for_recipe(r))
    assert torch.equal(model.language_model.model.layers[1].mlp.up_proj.weight, llm.model.layers[1].mlp.up_proj.weight)
    assert torch.equal(model.vision_tower.model.embeddings.patch_embedding.weight,
                       tower.embeddings.patch_embedding.weight)
