"""Inference API: batched = single greedy decoding on mixed modalities, streaming, KV cache,
seeded sampling, load options and the one-call ``eval_model``."""
import functools
import json

import pytest
import torch

from gemfactory.errors import GemError
from gemfactory.infer import (
    GenerationSettings, Prompt, eval_model, generate, generate_ids, load_pretrained_model, stream,
)
from gemfactory.infer import load as load_mod
from gemfactory.model.checkpoint import save_checkpoint

BNB_MISSING = ("load_4bit needs the bitsandbytes package, which is not installed (pip install bitsandbytes), "
               "and a CUDA GPU")


@pytest.fixture(scope="module")
def ckpt(tiny_built, tmp_path_factory):
    _, tok, model, _ = tiny_built
    return save_checkpoint(model, tok, tmp_path_factory.mktemp("infer") / "model")


@pytest.fixture(scope="module")
def loaded(ckpt):
    loaded = load_pretrained_model(ckpt)
    # an untrained tiny model answers almost the same to every prompt: spread its weights so that
    # the answers depend on the prompt, and a batching bug cannot hide behind identical outputs
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in loaded.model.parameters():
            if p.ndim >= 2:
                p.add_(torch.randn(p.shape, generator=gen) * 0.15)
    return loaded


@pytest.fixture(scope="module")
def prompts(tiny_data):
    items = json.loads((tiny_data / "test.json").read_text())
    ecg = tiny_data / "ecg" / next(i for i in items if i.get("ecg"))["ecg"]
    image = tiny_data / "images" / next(i for i in items if i.get("image"))["image"]
    return [  # different lengths: left padding in a batch
        Prompt.ask("What is an electrocardiogram, in a few words please?"),
        Prompt.ask("Rate?", ecg=ecg),
        Prompt.ask("What colour is the grid on this sheet?", image=image),
        Prompt.ask("Heart rate", ecg=ecg, image=image),
    ]


GREEDY = GenerationSettings(max_new_tokens=10)


def spy_lm(loaded, monkeypatch) -> list[dict]:
    """Record the keywords of every language-model forward call (signature kept for HF)."""
    lm = loaded.model.language_model
    real = lm.forward
    calls = []

    @functools.wraps(real)
    def forward(*args, **kwargs):
        cache = kwargs.get("past_key_values")  # filled in place: note its length now
        calls.append({**kwargs, "cached": cache.get_seq_length() if cache is not None else None})
        return real(*args, **kwargs)

    monkeypatch.setattr(lm, "forward", forward)
    return calls


def test_batched_greedy_equals_single_calls(loaded, prompts):
    batched = generate_ids(loaded, prompts, GREEDY)
    singles = [generate_ids(loaded, [p], GREEDY)[0] for p in prompts]
    assert batched == singles
    assert len({tuple(ids) for ids in singles}) > 1, "the outputs do not depend on the prompt"
    texts = generate(loaded, prompts, GREEDY)
    assert texts == [t.strip() for t in loaded.tokenizer.batch_decode(singles, skip_special_tokens=True)]
    assert generate(loaded, prompts[2], GREEDY) == texts[2]  # one Prompt -> one answer
    assert generate(loaded, prompts, GREEDY, batch_size=3) == texts


def test_left_padding_gets_mask_derived_positions_and_kv_cache(loaded, prompts, monkeypatch):
    calls = spy_lm(loaded, monkeypatch)
    generate_ids(loaded, prompts[:2], GenerationSettings(max_new_tokens=3))
    first, second = calls[0], calls[1]
    mask = first["attention_mask"]
    assert (mask[:, 0] == 0).any(), "expected a left-padded row"
    expected = (mask.long().cumsum(-1) - 1).clamp(min=0)
    real = mask.bool()
    assert torch.equal(first["position_ids"][real], expected[real])
    # KV cache: asked for, filled by the prompt, and later steps feed one new token
    assert all(c.get("use_cache") for c in calls)
    assert first["cached"] == 0 and second["cached"] == mask.shape[1]
    assert second["input_ids"].shape == (2, 1)
    assert torch.equal(second["position_ids"][:, -1], mask.sum(-1))


def test_stream_yields_the_same_text_as_generate(loaded, prompts):
    for prompt in (prompts[0], prompts[3]):
        pieces = list(stream(loaded, prompt, GREEDY))
        assert "".join(pieces).strip() == generate(loaded, prompt, GREEDY)


def test_stream_surfaces_errors_instead_of_hanging(loaded, prompts, monkeypatch):
    def boom(**kwargs):
        raise RuntimeError("generation failed")

    monkeypatch.setattr(loaded.model, "generate", boom)
    with pytest.raises(RuntimeError, match="generation failed"):
        list(stream(loaded, prompts[0], GREEDY))


def test_sampling_is_reproducible_with_a_seed(loaded, prompts):
    sampled = GenerationSettings(max_new_tokens=8, temperature=1.0, top_p=0.95)
    runs = []
    for seed in (0, 0, 1):
        torch.manual_seed(seed)
        runs.append(generate_ids(loaded, prompts[:2], sampled))
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


def test_eval_model_answers_like_generate(ckpt, loaded, prompts, tiny_data):
    ecg = prompts[1].ecg
    args = {"model_path": str(ckpt), "query": "Rate?", "ecg_file": str(ecg), "max_new_tokens": 10}
    assert eval_model(args, loaded=loaded) == generate(loaded, prompts[1], GREEDY)
    fresh = eval_model(args)  # loads the (unperturbed) checkpoint itself
    assert isinstance(fresh, str)
    with pytest.raises(GemError, match="query is missing"):
        eval_model(model_path=str(ckpt))


def test_load_4bit_without_bitsandbytes_is_one_clear_error(ckpt, tmp_path):
    with pytest.raises(GemError) as info:
        load_pretrained_model(ckpt, load_4bit=True)
    assert str(info.value) == BNB_MISSING
    with pytest.raises(GemError) as info:  # checked before the checkpoint is even looked at
        load_pretrained_model(tmp_path / "nowhere", load_8bit=True)
    assert str(info.value).startswith("load_8bit needs the bitsandbytes package")


def test_quantization_needs_cuda_and_one_width(ckpt, monkeypatch):
    with pytest.raises(GemError, match="choose one of them, not both"):
        load_pretrained_model(ckpt, load_4bit=True, load_8bit=True)
    monkeypatch.setattr(load_mod.importlib.util, "find_spec", lambda name: object())  # as if installed
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(GemError, match="load_4bit needs a CUDA GPU"):
        load_pretrained_model(ckpt, load_4bit=True)


def test_quantization_config_skips_towers_and_connectors(loaded):
    config = load_mod.quantization_config(True, False, torch.float16)
    assert config.load_in_4bit and config.bnb_4bit_compute_dtype == torch.float16
    names = {n for n, _ in loaded.model.named_modules()}
    for pattern in config.llm_int8_skip_modules:
        assert pattern in names, pattern
    for part in ("vision_tower", "ecg_encoder", "connectors"):
        assert part in config.llm_int8_skip_modules
    assert load_mod.quantization_config(False, True, torch.float16).load_in_8bit


@pytest.mark.parametrize("kwargs, message", [
    ({"dtype": "float8"}, "dtype 'float8': expected one of float32, bfloat16, float16"),
    ({"device": "gpu0"}, "device 'gpu0': expected cpu, cuda"),
    ({"device": "cuda"}, "device 'cuda': no CUDA device is available"),
])
def test_bad_dtype_and_device_name_the_argument(ckpt, kwargs, message):
    if "cuda" in str(kwargs.get("device")) and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(GemError) as info:
        load_pretrained_model(ckpt, **kwargs)
    assert message in str(info.value)


def test_bad_generation_settings():
    with pytest.raises(GemError, match="top_p"):
        GenerationSettings(top_p=0)
    with pytest.raises(GemError, match="max_new_tokens"):
        GenerationSettings(max_new_tokens=0)
