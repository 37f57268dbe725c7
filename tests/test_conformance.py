"""Every registered component -- built in, or from an installed plugin -- passes the conformance kit."""
import pytest
import torch

from gemfactory.testing import assert_conforms, check_component, registered_components

MODULE_CHECKS = ["output", "determinism", "state dict round trip", "gradients", "train step"]
CHECKS = {
    "llms": ["family", "tokenizer", "tiny config", "build", *MODULE_CHECKS],
    "vision_towers": ["tiny config", "build", "image processor", *MODULE_CHECKS],
    "ecg_encoders": ["tiny config", "build", "signal spec", *MODULE_CHECKS],
    "connectors": ["widths", "build", "token count", *MODULE_CHECKS],
    "templates": ["build", "tokenizer", "label mask", "generation prompt", "stop strings", "train step"],
    "eval_tasks": ["build", "examples", "reference answers", "unrelated answer", "score"],
}


@pytest.mark.parametrize(("kind", "name"), registered_components(), ids=lambda v: str(v))
def test_component_passes_every_check(kind, name):
    findings = assert_conforms(kind, name)
    assert [f.check for f in findings] == CHECKS[kind]


def test_every_kind_has_components():
    assert {kind for kind, _ in registered_components()} == set(CHECKS)


def test_kit_leaves_the_random_state_and_threads_as_they_were():
    torch.manual_seed(123)
    state, threads = torch.random.get_rng_state(), torch.get_num_threads()
    check_component("connectors", "linear")
    assert torch.equal(torch.random.get_rng_state(), state) and torch.get_num_threads() == threads
