"""Property-based tests (hypothesis, small budgets): the recipe override parser, the label mask of the
chat templates, and the WFDB reader on random records."""
import copy
import math
import tempfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings, strategies as st

from gemfactory.config import apply_override, recipe_from_dict
from gemfactory.errors import ConfigError, ECGError

SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

BASE = {"model": {"llm": {"name": "vicuna"}}, "data": {"train": "train.json"},
        "stages": [{"name": "pre"}, {"name": "finetune"}], "training": {"output_dir": "runs/x"}}

# -- recipe overrides --------------------------------------------------------------------------
finite = dict(allow_nan=False, allow_infinity=False)
# dotted key -> (strategy of valid values, how to read the value back from the Recipe)
FIELDS = {
    "training.seed": (st.integers(-2**31, 2**31), lambda r: r.training.seed),
    "training.bf16": (st.booleans(), lambda r: r.training.bf16),
    "training.output_dir": (st.text(min_size=1, max_size=20), lambda r: r.training.output_dir),
    "training.report_to": (st.lists(st.sampled_from(["tensorboard", "wandb"]), max_size=2),
                           lambda r: r.training.report_to),
    "data.max_length": (st.integers(1, 10**6), lambda r: r.data.max_length),
    "data.max_bad_fraction": (st.floats(0, 1, **finite), lambda r: r.data.max_bad_fraction),
    "data.on_bad_sample": (st.sampled_from(["skip", "error"]), lambda r: r.data.on_bad_sample),
    "stages.finetune.lr": (st.floats(1e-12, 10, **finite), lambda r: r.stage("finetune").lr),
    "stages.pre.batch_size": (st.integers(1, 4096), lambda r: r.stage("pre").batch_size),
    "stages.0.epochs": (st.floats(0, 100, **finite), lambda r: r.stages[0].epochs),
    "stages.finetune.tune.llm": (st.sampled_from(["frozen", "full", "lora"]), lambda r: r.stage("finetune").tune["llm"]),
    "model.llm.arch.hidden_size": (st.integers(1, 8192), lambda r: r.model.llm.arch["hidden_size"]),
    "description": (st.text(max_size=30), lambda r: r.description),
}


def yaml_value(value) -> str:
    """How a user writes the value on the command line (YAML flow style, quoted where needed)."""
    return yaml.safe_dump(value, default_flow_style=True, width=10**6).strip().removesuffix("\n...").strip()


@st.composite
def valid_overrides(draw):
    keys = draw(st.lists(st.sampled_from(sorted(FIELDS)), min_size=1, max_size=4, unique=True))
    return [(key, draw(FIELDS[key][0])) for key in keys]


@SETTINGS
@given(valid_overrides())
def test_valid_overrides_round_trip(overrides):
    raw = copy.deepcopy(BASE)
    for key, value in overrides:
        apply_override(raw, f"{key}={yaml_value(value)}")
    recipe = recipe_from_dict(raw)
    for key, value in overrides:
        got = FIELDS[key][1](recipe)
        assert got == value and type(got) is type(value), (key, value, got)
    # and the recipe written back out reads the same
    assert recipe_from_dict(yaml.safe_load(yaml.safe_dump(recipe.to_dict()))).to_dict() == recipe.to_dict()


KEY_PARTS = st.sampled_from(["model", "llm", "name", "data", "stages", "pre", "finetune", "0", "7", "training",
                             "seed", "lr", "tune", "arch", "lora", "r", "connectors", "image", "via", "bogus",
                             "", " ", "max_length", "partial", "modules"])
VALUE_TEXT = st.one_of(st.text(max_size=12), st.sampled_from(
    ["[1, 2", "{a: 1}", "null", "~", "-1", "1e400", ".nan", "2020-01-01", "!!python/object:os.system ls",
     "[]", "{}", "yes", "'x'", "&a [*a]", "0x10", "\"", "full", "lora", "partial"]))


@SETTINGS
@given(st.lists(st.one_of(
    st.text(max_size=30),  # anything at all
    st.builds(lambda parts, value: ".".join(parts) + "=" + value, st.lists(KEY_PARTS, min_size=1, max_size=4),
              VALUE_TEXT),
), min_size=1, max_size=3))
def test_any_override_is_applied_or_refused_with_config_error(items):
    raw = copy.deepcopy(BASE)
    try:
        for item in items:
            apply_override(raw, item)
        recipe_from_dict(raw)
    except ConfigError as exc:
        assert str(exc) and "\n" not in str(exc).strip()


# -- template label masks ----------------------------------------------------------------------
TEMPLATES = {"vicuna_v1": "vicuna", "chatml": "qwen2", "llama3": "llama3", "gemma": "gemma", "phi": "phi"}
# words, punctuation, digits, spaces, newlines and a few non-ASCII letters; no markup characters
TEXT = st.text(st.sampled_from(list("abcdefghij klmnopXYZ0123456789.,?!:'-\n\tµéß")), min_size=1, max_size=40)
REPLY = TEXT.filter(lambda s: s.strip())


@st.composite
def conversations(draw):
    from gemfactory.template.base import Turn

    turns = [Turn("system", draw(TEXT))] if draw(st.booleans()) else []
    for _ in range(draw(st.integers(1, 3))):
        turns += [Turn("user", draw(TEXT)), Turn("assistant", draw(REPLY))]
    return turns


def supervised_runs(enc) -> list[list[int]]:
    from gemfactory.template.base import IGNORE_INDEX

    runs, cur = [], []
    for token, label in zip(enc.input_ids, enc.labels):
        assert label in (IGNORE_INDEX, token)
        if label != IGNORE_INDEX:
            cur.append(token)
        elif cur:
            runs, cur = runs + [cur], []
    return runs + [cur] if cur else runs


@pytest.mark.parametrize("template_name", sorted(TEMPLATES))
def test_labels_mask_exactly_the_assistant_replies(template_name):
    from gemfactory.registry import TEMPLATES as REGISTRY
    from gemfactory.testing.train_step import tiny_tokenizer

    template = REGISTRY.get(template_name)()
    tok = tiny_tokenizer(f"gemfactory:{TEMPLATES[template_name]}")

    @settings(max_examples=12, deadline=None)
    @given(conversations())
    def check(turns):
        enc = template.encode(turns, tok)
        assert len(enc.labels) == len(enc.input_ids)
        replies = [t.text for t in turns if t.role == "assistant"]
        runs = supervised_runs(enc)
        assert len(runs) == len(replies)  # one contiguous supervised run per reply, in order
        for run, reply in zip(runs, replies):
            text = tok.decode(run, skip_special_tokens=True)
            assert reply.strip() in text and not text.replace(reply.strip(), "", 1).strip(), (reply, text)
        # the prompt for the last reply is the training text up to that reply
        prompt = template.render_prompt(turns[:-1], tok, add_generation_prompt=True)
        assert enc.text.startswith(prompt)

    check()


# -- WFDB reader -------------------------------------------------------------------------------
STANDARD = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]
LEAD_NAMES = STANDARD + ["MLII", "avr", "d1", "v5", "ABP", "Pleth"]


@st.composite
def records(draw):
    leads = draw(st.lists(st.sampled_from(LEAD_NAMES), min_size=1, max_size=8, unique_by=str.lower))
    fs = draw(st.sampled_from([50, 100, 125.5, 250, 257, 360, 500, 1000]))
    length = draw(st.integers(1, 3000))
    seed = draw(st.integers(0, 2**16))
    return leads, fs, length, seed


@st.composite
def specs(draw):
    from gemfactory.ecg.spec import SignalSpec

    leads = draw(st.sampled_from([tuple(STANDARD), ("I", "II", "III", "aVF"), ("II",), ("V1", "V5")]))
    return SignalSpec(fs=draw(st.sampled_from([100.0, 250.0, 500.0])), leads=leads,
                      n_samples=draw(st.integers(1, 1500)), allow_derived_leads=draw(st.booleans()),
                      normalisation=draw(st.sampled_from(["none", "zscore"])))


@SETTINGS
@given(records(), specs())
def test_random_records_are_mapped_or_refused_cleanly(record, spec):
    from gemfactory.data.ecg_io import canonical_lead, read_ecg, write_ecg

    leads, fs, length, seed = record
    signal = np.random.default_rng(seed).normal(scale=0.5, size=(len(leads), length))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rec"
        write_ecg(path, signal, fs, leads)
        have = {(canonical_lead(name) or name).lower() for name in leads}
        missing = [lead for lead in spec.leads if lead.lower() not in have]
        derivable = spec.allow_derived_leads and {"i", "ii"} <= have and set(missing) <= {"III", "aVR", "aVL", "aVF"}
        try:
            out = read_ecg(path, spec)
        except ECGError as exc:
            message = str(exc)
            assert message.startswith(f"ECG record {path}: ") and "\n" not in message
            assert (missing and not derivable) or length == 1, message  # 1 sample: flat
            if missing and not derivable:
                assert "missing leads" in message
            return
    assert not missing or derivable
    assert out.shape == (spec.n_leads, spec.n_samples) and out.dtype == np.float32
    assert np.isfinite(out).all()
    # a lead read as it was written (no resampling): the first samples are the written values in mV
    if fs == spec.fs and spec.normalisation == "none" and spec.leads[0].lower() in have:
        row = next(i for i, name in enumerate(leads) if (canonical_lead(name) or name).lower() == spec.leads[0].lower())
        n = min(length, spec.n_samples)
        assert np.allclose(out[0, :n], np.round(signal[row, :n] * 1000) / 1000, atol=1e-3)
        assert not out[0, n:].any()  # zero padding after the record


def test_yaml_value_helper_round_trips():
    for value in (1, 1.5e-7, True, "yes", "a: b", "", [1, "x"], math.pi):
        assert yaml.safe_load(yaml_value(value)) == value
