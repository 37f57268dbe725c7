"""ECG encoders: signals [B, leads, samples] -> tokens [B, num_tokens, hidden_size], with a SignalSpec."""
from __future__ import annotations

import json

import torch

from ..ecg.base import ECGEncoder
from ..ecg.spec import SignalSpec
from ..registry import ECG_ENCODERS
from .kit import Failed, Findings
from .modules import check_module, positive_int, rejects_unknown, saved_as_json, subclass_of
from .train_step import check_train_step, model_config

BATCH = 2


def check(name: str, findings: Findings) -> None:
    cls = ECG_ENCODERS.get(name)
    arch, spec = findings.need("tiny config", _tiny_config, cls)
    findings.check("unknown option", rejects_unknown, lambda extra: cls.resolve({"tiny": True, **extra}, {}))

    def build(seed: int) -> ECGEncoder:  # as GemForCausalLM does, from the JSON of config.json
        torch.manual_seed(seed)
        return cls(json.loads(json.dumps(arch)), SignalSpec.from_dict(json.loads(json.dumps(spec.to_dict()))))

    encoder = findings.need("build", _build, build)
    findings.check("signal spec", _signal_spec, encoder, spec)
    signals = torch.randn(BATCH, spec.n_leads, spec.n_samples)
    check_module(findings, encoder, build, (signals,),
                 [("batch", BATCH), ("num_tokens", encoder.num_tokens), ("hidden_size", encoder.hidden_size)])
    check_train_step(findings, model_config(ecg={"name": name, "arch": {"tiny": True}}), "ecg_encoder")


def _tiny_config(cls) -> tuple:
    subclass_of(cls, ECGEncoder)
    arch, spec = cls.resolve({"tiny": True}, {})
    if not isinstance(spec, SignalSpec):
        raise Failed(f"resolve() must return (arch dict, SignalSpec), got a {type(spec).__name__} spec")
    saved_as_json(arch, "the resolved arch")
    return (arch, spec), f"resolve({{'tiny': True}}, {{}}): {len(arch)} arch keys, JSON-serialisable"


def _build(build) -> tuple:
    encoder = build(0)
    hidden, tokens = positive_int(encoder, "hidden_size"), positive_int(encoder, "num_tokens")
    n = sum(p.numel() for p in encoder.parameters())
    return encoder, f"{type(encoder).__name__}: {tokens} tokens x {hidden}, {n:,} parameters"


def _signal_spec(encoder, spec: SignalSpec) -> str:
    own = getattr(encoder, "signal_spec", None)
    if own != spec:
        raise Failed(f"encoder.signal_spec is {own!r}; expected the SignalSpec it was built with ({spec})")
    if SignalSpec.from_dict(json.loads(json.dumps(own.to_dict()))) != own:
        raise Failed("the SignalSpec does not survive to_dict() -> JSON -> from_dict()")
    return (f"{spec.n_leads} leads ({spec.leads[0]}..{spec.leads[-1]}) x {spec.n_samples} samples at "
            f"{spec.fs:g} Hz, {spec.units}, normalisation {spec.normalisation}")
