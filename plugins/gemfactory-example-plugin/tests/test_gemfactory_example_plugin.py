"""The example plugin's components, as gemfactory sees them through the entry points."""
import pytest
import torch

from gemfactory.ecg.spec import SignalSpec
from gemfactory.errors import ConfigError
from gemfactory.registry import CONNECTORS, ECG_ENCODERS, TEMPLATES, TUNE_TYPES
from gemfactory.template.base import IGNORE_INDEX, SpecialText, Turn
from gemfactory.testing import assert_conforms

pytest.importorskip("gemfactory_example_plugin", reason="gemfactory-example-plugin is not installed: "
                    "pip install -c constraints.txt -e ./plugins/gemfactory-example-plugin")


@pytest.mark.parametrize(("kind", "name"), [("ecg_encoders", "beat_lstm"), ("connectors", "pooled_linear"),
                                            ("templates", "alpaca"), ("tune_types", "norm_only")])
def test_component_passes_the_conformance_kit(kind, name):
    assert_conforms(kind, name)


def test_components_come_from_this_distribution():
    for reg, name in ((ECG_ENCODERS, "beat_lstm"), (CONNECTORS, "pooled_linear"), (TEMPLATES, "alpaca"),
                      (TUNE_TYPES, "norm_only")):
        assert reg.entry(name).origin == "gemfactory-example-plugin"


@pytest.mark.parametrize(("fs", "n_samples", "tokens"), [(100.0, 1000, 13), (500.0, 5000, 13), (250.0, 400, 2)])
def test_beat_lstm_gives_one_token_per_beat_sized_window(fs, n_samples, tokens):
    cls = ECG_ENCODERS.get("beat_lstm")
    arch, spec = cls.resolve({"width": 16, "layers": 1}, {"fs": fs, "n_samples": n_samples})
    encoder = cls(arch, spec)
    assert (encoder.window, encoder.num_tokens) == (round(0.8 * fs), tokens)
    assert encoder(torch.randn(2, 12, n_samples)).shape == (2, tokens, 16)


def test_beat_lstm_refuses_a_window_longer_than_the_signal():
    cls = ECG_ENCODERS.get("beat_lstm")
    with pytest.raises(ConfigError, match=r"window_s: 2.0 s is 200 samples at 100 Hz; expected 1 to 100 samples"):
        cls({"width": 16, "layers": 1, "window_s": 2.0}, SignalSpec(fs=100.0, n_samples=100))


def test_pooled_linear_averages_neighbours_then_projects():
    conn = CONNECTORS.get("pooled_linear")(3, 4, stride=2)
    tokens = torch.randn(1, 5, 3)
    expected = conn.proj(torch.stack([tokens[0, :2].mean(0), tokens[0, 2:4].mean(0), tokens[0, 4]]))
    assert conn.output_tokens(5) == 3
    assert torch.allclose(conn(tokens)[0], expected, atol=1e-6)
    with pytest.raises(ConfigError, match="unknown option 'strde' \\(options it takes: stride\\)"):
        CONNECTORS.get("pooled_linear")(3, 4, strde=2)


class _Tok:
    """Whitespace tokenizer with character offsets: enough for the template's label mask."""

    bos_token, eos_token = "<s>", "</s>"

    def __call__(self, text, add_special_tokens=False, return_offsets_mapping=True):
        import re

        spans = [m.span() for m in re.finditer(r"\S+", text)]
        return {"input_ids": list(range(1, len(spans) + 1)), "offset_mapping": spans}


def test_alpaca_renders_instructions_and_supervises_only_responses():
    turns = [Turn("user", "Rate?"), Turn("assistant", "Normal."), Turn("user", "Rhythm?"), Turn("assistant", "Sinus.")]
    template = TEMPLATES.get("alpaca")()
    enc = template.encode(turns, _Tok())
    assert enc.text == (
        f"<s>{template.system}\n\n### Instruction:\nRate?\n\n### Response:\nNormal.</s>\n\n"
        "### Instruction:\nRhythm?\n\n### Response:\nSinus.</s>\n\n")
    words = enc.text.split()
    assert [w for w, label in zip(words, enc.labels) if label != IGNORE_INDEX] == ["Normal.</s>", "Sinus.</s>"]
    assert template.stop_strings(SpecialText("<s>", "</s>")) == ["</s>"]


def test_norm_only_stage_trains_just_the_norms_of_its_component():
    from gemfactory.config import recipe_from_dict
    from gemfactory.testing.train_step import model_config, tiny_model_and_batch
    from gemfactory.train.tuning import apply_tuning

    stage = recipe_from_dict({"stages": [{"name": "s", "tune": {"llm": "norm_only", "ecg": "frozen",
                                                                "connectors": "frozen"}}]}).stage("s")
    model, _, _ = tiny_model_and_batch(model_config())
    assert apply_tuning(model, stage)["llm"] == "norm_only"
    trained = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trained and all(n.startswith("language_model.") and "norm" in n for n in trained), trained


def test_norm_only_refuses_connectors_and_a_component_without_norms():
    from gemfactory.config import StageConfig
    from gemfactory.testing.train_step import model_config, tiny_model_and_batch
    from gemfactory.train.tuning import apply_tuning

    model, _, _ = tiny_model_and_batch(model_config())
    with pytest.raises(ConfigError, match=r"stages\.s\.tune\.connectors: norm_only is for llm, vision, ecg only"):
        apply_tuning(model, StageConfig(name="s", tune={"connectors": "norm_only"}))
    for block in model.ecg_encoder.modules():
        for name, child in list(block.named_children()):
            if type(child).__name__.endswith("Norm"):
                setattr(block, name, torch.nn.Identity())
    with pytest.raises(ConfigError, match=r"stages\.s\.tune\.ecg: norm_only found no normalisation layer"):
        apply_tuning(model, StageConfig(name="s", tune={"ecg": "norm_only"}))
