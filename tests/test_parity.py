"""LLaVA-1.5 parity: a GemForCausalLM built from a recipe as LLaVA-1.5 (Llama + CLIP, select_layer
-2, patch features, mlp2x_gelu, no ECG) computes what transformers' LlavaForConditionalGeneration
computes once the weights are copied across: same logits, same loss."""
import pytest
import torch

from gemfactory.template.base import IGNORE_INDEX, IMAGE_TOKEN

LLAMA = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, max_position_embeddings=128, rms_norm_eps=1e-6, tie_word_embeddings=False)
CLIP = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=2,
            image_size=32, patch_size=8, layer_norm_eps=1e-5, hidden_act="quick_gelu")
N_PATCHES = (CLIP["image_size"] // CLIP["patch_size"]) ** 2
TEXTS = ["USER: <image>\nWhat is the rhythm of this ECG? ASSISTANT: Normal sinus rhythm at 72 beats per minute.",
         "Is the heart rate slow, normal or fast? The grid of the sheet is red."] * 4


def llava_name(ours: str) -> str:
    """Our parameter name -> LlavaForConditionalGeneration's (transformers 5 layout)."""
    for old, new in (
        ("language_model.model.", "model.language_model."),
        ("language_model.lm_head.", "lm_head."),
        # HF CLIP: "vision_model." inside the tower in older transformers, flat in 5.x; either way
        # the part after the prefix is the same on both sides
        ("vision_tower.model.", "model.vision_tower."),
        ("connectors.image.0.", "model.multi_modal_projector.linear_1."),
        ("connectors.image.2.", "model.multi_modal_projector.linear_2."),
    ):
        if ours.startswith(old):
            return new + ours[len(old):]
    raise AssertionError(f"no LLaVA name for {ours}")


@pytest.fixture(scope="module")
def pair():
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

    from gemfactory.config import recipe_from_dict
    from gemfactory.model.builder import build_model, build_tokenizer

    recipe = recipe_from_dict({"model": {
        "llm": {"name": "vicuna", "tokenizer_vocab_size": 300, "arch": dict(LLAMA), "attn_implementation": "eager"},
        "vision": {"name": "clip", "arch": dict(CLIP), "options": {"select_layer": -2, "select_feature": "patch"}},
        "connectors": {"image": {"name": "mlp2x_gelu"}},
        "template": "vicuna_v1",
    }})
    tok = build_tokenizer(recipe.model, TEXTS)
    torch.manual_seed(0)
    ours = build_model(recipe.model, tok).eval()
    built_with = ours.language_model.config._attn_implementation  # what model.llm.attn_implementation gave
    with torch.no_grad():  # move off the small init so that logits are O(1) and differences show
        for param in ours.parameters():
            param.add_(torch.randn_like(param) * 0.15)
    assert ours.ecg_encoder is None and ours.modality_tokens() == {"image": N_PATCHES}
    image_id = tok.convert_tokens_to_ids(IMAGE_TOKEN)

    text_config = LlamaConfig(**LLAMA, vocab_size=len(tok), bos_token_id=tok.bos_token_id,
                              eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    # the Llama built through gemfactory is exactly this config
    mine = ours.config.text_config.to_dict()
    for key, value in text_config.to_dict().items():
        if key not in ("_name_or_path", "architectures", "transformers_version", "dtype", "torch_dtype"):
            assert mine.get(key) == value, (key, mine.get(key), value)
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(**CLIP), text_config=text_config,
        image_token_index=image_id, image_seq_length=N_PATCHES, vision_feature_layer=-2,
        vision_feature_select_strategy="default", projector_hidden_act="gelu", multimodal_projector_bias=True,
    )
    llava = LlavaForConditionalGeneration(config).eval()
    ours.set_attn_implementation("eager")
    llava.set_attn_implementation("eager")
    for model in (ours.language_model, ours.vision_tower.model, llava.model.language_model, llava.model.vision_tower):
        assert model.config._attn_implementation == "eager", type(model).__name__

    # copy every weight across by an explicit name map; every LLaVA weight must be assigned
    theirs = llava.state_dict()
    mapped = {llava_name(k): v for k, v in ours.state_dict().items()}
    assert set(mapped) == set(theirs), (set(theirs) ^ set(mapped))
    for key, value in mapped.items():
        assert value.shape == theirs[key].shape, key
    llava.load_state_dict(mapped, strict=True)
    for key, value in llava.state_dict().items():
        assert torch.equal(value, mapped[key]), key
    assert llava.lm_head.weight.data_ptr() != llava.model.language_model.embed_tokens.weight.data_ptr()
    return ours, llava, tok, image_id, built_with


@pytest.fixture(scope="module")
def inputs(pair):
    """Two samples of different lengths, each with one image (placeholder expanded to N_PATCHES
    copies), right-padded with an attention mask, plus labels that skip image tokens and padding."""
    ours, _, tok, image_id, _ = pair
    specials = set(tok.all_special_ids)
    vocab = torch.tensor([i for i in range(len(tok)) if i not in specials])
    gen = torch.Generator().manual_seed(0)

    def words(n):
        return vocab[torch.randint(len(vocab), (n,), generator=gen)].tolist()

    rows = [
        [tok.bos_token_id, *words(5), *[image_id] * N_PATCHES, *words(9), tok.eos_token_id],
        [tok.bos_token_id, *words(2), *[image_id] * N_PATCHES, *words(3), tok.eos_token_id],
    ]
    width = max(map(len, rows))
    input_ids = torch.full((2, width), tok.pad_token_id)
    attention_mask = torch.zeros(2, width, dtype=torch.long)
    for i, row in enumerate(rows):
        input_ids[i, : len(row)] = torch.tensor(row)
        attention_mask[i, : len(row)] = 1
    labels = input_ids.clone()
    labels[(input_ids == image_id) | (attention_mask == 0)] = IGNORE_INDEX
    pixel_values = torch.randn(2, 3, CLIP["image_size"], CLIP["image_size"], generator=gen)
    assert attention_mask[1].sum() < width  # the second row is really padded
    return dict(input_ids=input_ids, attention_mask=attention_mask, pixel_values=pixel_values, labels=labels)


def test_image_features_match(pair, inputs):
    ours, llava, _, _, _ = pair
    with torch.no_grad():  # both as [image tokens of the batch, in order, D]
        a = ours.encode_images(inputs["pixel_values"])
        a = a.reshape(-1, a.shape[-1])
        b = torch.cat(list(llava.model.get_image_features(inputs["pixel_values"]).pooler_output))
        b = b.reshape(-1, b.shape[-1])
    assert a.shape == b.shape == (2 * N_PATCHES, LLAMA["hidden_size"])
    assert (a - b).abs().max().item() <= 1e-6


def test_logits_and_loss_match_llava(pair, inputs):
    ours, llava, _, _, _ = pair
    with torch.no_grad():
        a = ours(**inputs)
        b = llava(**inputs)
    assert a.logits.shape == b.logits.shape and a.logits.shape[:2] == inputs["input_ids"].shape
    assert a.logits.std() > 0.3  # logits of a useful size
    diff = (a.logits - b.logits).abs().max().item()
    assert diff <= 1e-5, diff
    real = inputs["attention_mask"].bool()
    assert (a.logits[real] - b.logits[real]).abs().max().item() <= 1e-5
    assert torch.isfinite(a.loss) and abs(a.loss.item() - b.loss.item()) <= 1e-5, (a.loss, b.loss)

    # not vacuous: the image reaches the logits through the same path on both sides
    other = dict(inputs, pixel_values=inputs["pixel_values"].flip(0))
    with torch.no_grad():
        c, d = ours(**other).logits, llava(**other).logits
    assert (c - a.logits).abs().max().item() > 1e-3
    assert (c - d).abs().max().item() <= 1e-5


def test_recipe_attn_implementation_reaches_the_llm(pair):
    assert pair[-1] == "eager"
