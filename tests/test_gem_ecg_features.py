"""GEM's ECG features against GEM's own tower code.

``tests/data/gem_ecg_features.pt`` was written by ``scripts/make_gem_ecg_fixture.py``, which runs
GEM's ``ecg_coca/open_clip/transformer.py`` (commit recorded in the file) on random weights and a
random signal. gemfactory's ``vit1d`` loads those weights from the ECG-CoCa checkpoint layout and
must give the same tokens: ``output: pre_ln_post`` = GEM's ``output_last_transformer_layer=True``.
"""
from pathlib import Path

import pytest
import torch

from gemfactory.errors import ConfigError
from gemfactory.registry import ECG_ENCODERS

FIXTURE = Path(__file__).parent / "data" / "gem_ecg_features.pt"


@pytest.fixture(scope="module")
def golden():
    return torch.load(FIXTURE, map_location="cpu", weights_only=True)


def vit1d(golden, **arch):
    cls = ECG_ENCODERS.get("vit1d")
    full, spec = cls.resolve({**golden["arch"], **arch}, {"n_samples": golden["signal"]["n_samples"], "fs": 50.0})
    encoder = cls(full, spec)
    encoder.load_pretrained(str(FIXTURE))
    return encoder.eval()


def test_fixture_comes_from_the_seed(golden):
    assert golden["seed"].startswith("lanxiang1017/GEM@") and len(golden["seed"].split("@")[1]) == 40
    assert golden["gem_features"].shape == (2, 11, 32)  # CLS + 10 patches


def test_pre_ln_post_equals_gem_features(golden):
    with torch.no_grad():
        got = vit1d(golden, output="pre_ln_post")(golden["input"])
    assert got.shape == golden["gem_features"].shape
    assert torch.allclose(got, golden["gem_features"], atol=1e-5, rtol=0)


def test_ln_post_equals_ecg_coca_token_output(golden):
    with torch.no_grad():
        got = vit1d(golden, output="ln_post", output_tokens="patch")(golden["input"])
    assert torch.allclose(got, golden["ln_post_tokens"], atol=1e-5, rtol=0)
    # and the two outputs really differ: the option is not a no-op
    assert not torch.allclose(got, golden["gem_features"][:, 1:], atol=1e-3)


def test_unknown_output_is_a_config_error(golden):
    with pytest.raises(ConfigError, match="model.ecg.arch.output: 'final'"):
        vit1d(golden, output="final")


@pytest.mark.parametrize("recipe", ["gem-phi2", "gem-vicuna7b", "gem-llama3-8b", "gem-qwen2-1.5b"])
def test_gem_recipes_take_gems_features(recipe):
    from gemfactory.config import load_recipe

    ecg = load_recipe(Path(__file__).parent.parent / "recipes" / f"{recipe}.yaml").model.ecg
    arch, _ = ECG_ENCODERS.get(ecg.name).resolve(ecg.arch, ecg.signal)
    assert (ecg.name, arch["output"], arch["output_tokens"]) == ("vit1d", "pre_ln_post", "cls_patch")


def test_tiny_twin_keeps_the_output_choice():
    from gemfactory.config import load_recipe
    from gemfactory.train.twin import shrink

    twin = shrink(load_recipe(Path(__file__).parent.parent / "recipes" / "gem-phi2.yaml"))
    assert twin.model.ecg.arch["output"] == "pre_ln_post"


@pytest.mark.parametrize("fast", [True, False])
def test_ecg_reading_equals_gems_on_a_500hz_12_lead_record(shared_data, fast):
    """GEM's own reading lines (fixture written by scripts/make_gem_ecg_reading_fixture.py) on
    JS00001: wfdb physical values, NaN/inf to 0, first 5000 samples. gemfactory's reader in the
    GEM recipes' signal spec gives the same array."""
    import numpy as np

    from gemfactory.data.ecg_io import read_ecg

    golden = np.load(Path(__file__).parent / "data" / "gem_ecg_reading_JS00001.npz")
    assert str(golden["seed"]).startswith("lanxiang1017/GEM@")
    _, spec = ECG_ENCODERS.get("vit1d").resolve({}, {"fs": 500, "n_samples": 5000})
    ours = read_ecg(shared_data / "JS00001", spec, fast=fast)
    assert ours.dtype == golden["ecg"].dtype and np.array_equal(ours, golden["ecg"])
