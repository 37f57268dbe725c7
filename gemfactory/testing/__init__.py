"""Conformance kit: does a component -- built in or from a plugin -- keep the contracts gemfactory relies on?

    from gemfactory.testing import assert_conforms, check_component
    for finding in check_component("ecg_encoders", "beat_lstm"):  # one Finding per check
        print(finding)
    assert_conforms("connectors", "pooled_linear")  # in a test: ConformanceError listing the failures

The component is built at tiny scale and checked for its interface (output shape, dtype and widths;
the SignalSpec of an ECG encoder, the image processor of a tower, the label mask of a template, the
scoring of an eval task), gradient flow, a state-dict round trip giving identical outputs,
determinism in eval mode, and one training step of a whole tiny GemForCausalLM built with it.
``gemfactory plugin check NAME [--kind KIND]`` prints the same findings.
"""
from .kit import ConformanceError, Finding, assert_conforms, check_component, find_kind, registered_components

__all__ = ["ConformanceError", "Finding", "assert_conforms", "check_component", "find_kind", "registered_components"]
