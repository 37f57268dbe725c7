"""Every registered component -- built in, or from an installed plugin -- passes the conformance kit."""
import pytest
import torch

from gemfactory.testing import assert_conforms, check_component, registered_components

MODULE_CHECKS = ["output", "determinism", "state dict round trip", "gradients", "train step"]
CHECKS = {
    "llms": ["family", "tokenizer", "tiny config", "build", *MODULE_CHECKS],
    "vision_towers": ["tiny config", "unknown option", "build", "image processor", *MODULE_CHECKS],
    "ecg_encoders": ["tiny config", "unknown option", "build", "signal spec", *MODULE_CHECKS],
    "connectors": ["contract", "widths", "unknown option", "build", "token count", *MODULE_CHECKS],
    "templates": ["build", "tokenizer", "label mask", "generation prompt", "stop strings", "train step"],
    "eval_tasks": ["build", "examples", "reference answers", "unrelated answer", "score"],
    "tune_types": ["contract", "components"],  # + one train step per component it applies to (below)
}
TUNE_STEPS = {"qlora": ["llm"], "gemfactory-example-plugin:norm_only": ["llm", "ecg"]}  # the others: llm, ecg and connectors of the kit's tiny model


@pytest.mark.parametrize(("kind", "name"), registered_components(), ids=lambda v: str(v))
def test_component_passes_every_check(kind, name):
    findings = assert_conforms(kind, name)
    steps = [f"train step ({c})" for c in TUNE_STEPS.get(name, ["llm", "ecg", "connectors"])] if kind == "tune_types" else []
    assert [f.check for f in findings] == CHECKS[kind] + steps


def test_every_kind_has_components():
    assert {kind for kind, _ in registered_components()} == set(CHECKS)


def test_kit_leaves_the_random_state_and_threads_as_they_were():
    torch.manual_seed(123)
    state, threads = torch.random.get_rng_state(), torch.get_num_threads()
    check_component("connectors", "linear")
    assert torch.equal(torch.random.get_rng_state(), state) and torch.get_num_threads() == threads


class _PlainLinear(torch.nn.Linear):
    """A connector written before the Connector contract: no base class, no option check."""

    def __init__(self, in_dim, out_dim, **options):
        super().__init__(in_dim, out_dim)


def _with_plugin_connector(name, cls):
    from gemfactory.registry import CONNECTORS

    CONNECTORS._load_plugins()
    CONNECTORS.add_plugin(name, cls, "conformance-test")
    return CONNECTORS


@pytest.mark.parametrize(("name", "cls", "failed"), [
    ("plain_linear", _PlainLinear, "contract"),
])
def test_connector_outside_the_contract_fails_the_kit(name, cls, failed):
    reg = _with_plugin_connector(name, cls)
    try:
        findings = check_component("connectors", f"conformance-test:{name}")
    finally:
        reg._plugins.pop(f"conformance-test:{name}")
    bad = [f for f in findings if not f.ok]
    assert [f.check for f in bad] == [failed]
    assert "is not a subclass of gemfactory.connector.base.Connector" in bad[0].detail


def test_connector_that_accepts_unknown_options_fails_the_kit():
    from gemfactory.connector.base import Connector

    class Accepting(Connector, torch.nn.Linear):
        def __init__(self, in_dim, out_dim, **options):  # forgets check_options
            torch.nn.Linear.__init__(self, in_dim, out_dim)
            self.set_dims(in_dim, out_dim)

    reg = _with_plugin_connector("accepting", Accepting)
    try:
        findings = check_component("connectors", "conformance-test:accepting")
    finally:
        reg._plugins.pop("conformance-test:accepting")
    bad = [f for f in findings if not f.ok]
    assert [(f.check, f.detail) for f in bad] == [
        ("unknown option", "an unknown option 'no_such_option' was accepted; expected a ConfigError naming it")]
