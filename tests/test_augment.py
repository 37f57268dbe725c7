"""data.augment: each ECG augmentation does what it says and nothing else; training only."""
import numpy as np
import pytest
import torch

from gemfactory.config import recipe_from_dict
from gemfactory.config import AugmentConfig
from gemfactory.data.augment import ECGAugmenter
from gemfactory.errors import ConfigError

FS = 100.0


def only(name: str, **values) -> AugmentConfig:
    """A config with just augmentation ``name`` on (p = 1) and the given settings."""
    cfg = AugmentConfig()
    part = getattr(cfg, name)
    part.p = 1.0
    for key, value in values.items():
        setattr(part, key, value)
    return cfg


@pytest.fixture
def x():
    rng = np.random.default_rng(0)
    t = np.arange(1000) / FS
    return np.sin(2 * np.pi * 1.3 * t)[None, :] * rng.uniform(0.5, 2.0, (12, 1)) + rng.normal(0, 0.1, (12, 1000))


def test_off_is_identity_and_builds_nothing(x):
    cfg = AugmentConfig()
    assert not cfg.enabled
    assert ECGAugmenter.from_config(cfg, type("Spec", (), {"fs": FS})(), seed=0) is None
    assert np.array_equal(ECGAugmenter(cfg, FS).apply(x, np.random.default_rng(1)), x)
    # p = 0 on a configured augmentation leaves the signal alone as well
    cfg.gain.range = [0.1, 0.2]
    assert np.array_equal(ECGAugmenter(cfg, FS).apply(x, np.random.default_rng(1)), x)


def test_gain_scales_every_lead_by_one_factor_in_range(x):
    out = ECGAugmenter(only("gain", range=[0.5, 2.0]), FS).apply(x, np.random.default_rng(3))
    ratio = out / x
    assert np.allclose(ratio, ratio.flat[0]) and 0.5 <= ratio.flat[0] <= 2.0 and ratio.flat[0] != 1.0


def test_lead_dropout_zeroes_exactly_the_chosen_leads(x):
    aug = ECGAugmenter(only("lead_dropout", max_leads=4), FS)
    counts = set()
    for seed in range(30):
        out = aug.apply(x, np.random.default_rng(seed))
        dropped = [i for i in range(12) if not out[i].any()]
        assert 1 <= len(dropped) <= 4
        kept = [i for i in range(12) if i not in dropped]
        assert np.array_equal(out[kept], x[kept])
        counts.add(len(dropped))
    assert len(counts) > 1  # the number of dropped leads varies


def test_noise_adds_zero_mean_noise_of_the_given_size(x):
    out = ECGAugmenter(only("noise", std=[0.2, 0.3]), FS).apply(x, np.random.default_rng(0))
    added = out - x
    assert 0.18 < added.std() < 0.32 and abs(added.mean()) < 0.02


def test_baseline_wander_adds_one_slow_sine_per_lead(x):
    out = ECGAugmenter(only("baseline_wander", amplitude=[0.5, 1.0], freq_hz=[0.1, 0.3]), FS).apply(
        x, np.random.default_rng(0))
    added = out - x
    spectrum = np.abs(np.fft.rfft(added, axis=1))
    freqs = np.fft.rfftfreq(added.shape[1], 1 / FS)
    assert (freqs[spectrum.argmax(axis=1)] <= 0.4).all()  # all of it below 0.4 Hz
    assert (np.abs(added).max(axis=1) <= 1.0 + 1e-9).all() and np.abs(added).max() > 0.3


def test_time_shift_moves_the_signal_and_zero_fills(x):
    aug = ECGAugmenter(only("time_shift", max_s=2.0), FS)
    shifts = set()
    for seed in range(10):
        out = aug.apply(x, np.random.default_rng(seed))
        match = [k for k in range(-200, 201)
                 if (k >= 0 and np.array_equal(out[:, k:], x[:, :1000 - k]) and not out[:, :k].any())
                 or (k < 0 and np.array_equal(out[:, :k], x[:, -k:]) and not out[:, k:].any())]
        assert len(match) == 1
        shifts.add(match[0])
    assert len(shifts) > 1


def test_crop_keeps_one_window_of_at_least_min_s(x):
    aug = ECGAugmenter(only("crop", min_s=6.0), FS)
    for seed in range(10):
        out = aug.apply(x, np.random.default_rng(seed))
        kept = np.flatnonzero(out.any(axis=0))
        lo, hi = kept[0], kept[-1] + 1
        assert hi - lo >= 600 and len(kept) == hi - lo
        assert np.array_equal(out[:, lo:hi], x[:, lo:hi]) and not out[:, :lo].any() and not out[:, hi:].any()


def test_deterministic_per_seed_epoch_and_sample(x):
    cfg = only("noise")
    cfg.gain.p = 1.0
    ecg = torch.from_numpy(x).float()
    a, b = ECGAugmenter(cfg, FS, seed=7), ECGAugmenter(cfg, FS, seed=7)
    assert torch.equal(a(ecg, "s1"), b(ecg, "s1"))
    assert not torch.equal(a(ecg, "s1"), a(ecg, "s2"))
    assert not torch.equal(a(ecg, "s1"), ECGAugmenter(cfg, FS, seed=8)(ecg, "s1"))
    first = a(ecg, "s1")
    a.epoch = 1
    assert not torch.equal(first, a(ecg, "s1"))
    assert a(ecg, "s1").dtype == ecg.dtype and torch.equal(ecg, torch.from_numpy(x).float())  # input untouched


def _recipe(augment) -> dict:
    return {"model": {"llm": {"name": "vicuna"}}, "data": {"augment": augment},
            "stages": [{"name": "s", "epochs": 1, "batch_size": 1, "lr": 1e-3}]}


def test_recipe_key_parses_and_rejects_unknown_keys_with_their_path():
    r = recipe_from_dict(_recipe({"gain": {"p": 0.5, "range": [0.8, 1.2]}, "lead_dropout": {"p": 0.2}}))
    assert r.data.augment.gain.p == 0.5 and r.data.augment.gain.range == [0.8, 1.2]
    assert r.data.augment.enabled and r.data.augment.lead_dropout.max_leads == 6
    assert not recipe_from_dict(_recipe({})).data.augment.enabled
    with pytest.raises(ConfigError, match=r"data\.augment\.gain\.probability: unknown key"):
        recipe_from_dict(_recipe({"gain": {"probability": 0.5}}))
    with pytest.raises(ConfigError, match=r"data\.augment\.jitter: unknown key"):
        recipe_from_dict(_recipe({"jitter": {"p": 0.5}}))
    with pytest.raises(ConfigError, match=r"data\.augment\.noise\.p: must be within \[0, 1\]"):
        recipe_from_dict(_recipe({"noise": {"p": 1.5}}))
    with pytest.raises(ConfigError, match=r"data\.augment\.gain\.range: expected \[low, high\]"):
        recipe_from_dict(_recipe({"gain": {"p": 0.5, "range": [2.0, 1.0]}}))
    with pytest.raises(ConfigError, match=r"data\.augment\.lead_dropout\.max_leads: expected int"):
        recipe_from_dict(_recipe({"lead_dropout": {"max_leads": 1.5}}))


def test_only_the_training_processor_augments(tiny_built, tiny_data):
    import json

    from gemfactory.data.processor import Processor

    recipe, tok, model, template = tiny_built
    item = next(i for i in json.loads((tiny_data / "train.json").read_text()) if i.get("ecg"))
    plain = Processor.from_model(model, tok, template)
    assert plain.augment is None  # how eval, chat and the app build theirs
    clean = plain.sample(item, tiny_data / "images", tiny_data / "ecg")["ecg"]
    cfg = only("lead_dropout", max_leads=3)
    trained = Processor.from_model(model, tok, template)
    trained.augment = ECGAugmenter(cfg, plain.signal_spec.fs, seed=0)
    augmented = trained.sample(item, tiny_data / "images", tiny_data / "ecg")["ecg"]
    assert torch.equal(augmented, trained.augment(clean, item["id"]))
    assert not torch.equal(augmented, clean)
    assert torch.equal(plain.sample(item, tiny_data / "images", tiny_data / "ecg")["ecg"], clean)


def test_epoch_callback_moves_the_draws_on():
    """The epoch callback the trainer adds moves the augmenter's draws on each epoch."""
    from gemfactory.train import trainer

    cb = trainer.AugmentEpochs(ECGAugmenter(only("noise"), FS))
    cb.on_epoch_begin(None, type("State", (), {"epoch": 2.0})(), None)
    assert cb.augmenter.epoch == 2
    trainer.AugmentEpochs(None).on_epoch_begin(None, type("State", (), {"epoch": 1.0})(), None)  # off: no-op
