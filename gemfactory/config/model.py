"""``model``: which LLM, vision tower, ECG encoder, connectors, template and layout a recipe builds."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

from .fields import help_field

MODALITIES = ("image", "ecg")


@dataclass
class LLMConfig:
    name: str = help_field("LLM family in the registry (gemfactory list llm)", default="vicuna")
    path: Optional[str] = help_field("local HF folder or hub repo id (ORG/NAME[@REVISION]) with weights; "
                                     "unset: built from `arch` with random weights", default=None)
    arch: dict = help_field("config overrides (tiny builds, or on top of `path`'s config)", default_factory=dict)
    tokenizer: Optional[str] = help_field("tokenizer folder or hub repo id; unset: `path`'s, else a tiny "
                                          "tokenizer trained on the data", default=None)
    config: Optional[str] = help_field(
        "folder or hub repo id whose config.json planning (memory, --dry-run) reads while `path` is a local "
        "folder not made yet (e.g. a merged delta); unused when `path` exists or is a repo id", default=None)
    tokenizer_vocab_size: int = help_field("vocabulary of the tiny tokenizer trained from the data", default=1024)
    dtype: Literal["float32", "bfloat16", "float16"] = help_field("weight dtype of the LLM", default="float32")
    attn_implementation: Optional[str] = help_field(
        "attention kernel; unset or auto: flash_attention_2 where installed with CUDA and bf16/fp16, else sdpa",
        default=None)


@dataclass
class VisionConfig:
    name: str = help_field("vision tower in the registry (gemfactory list vision)", default="clip")
    path: Optional[str] = help_field("HF folder / weight file, or a hub repo id (ORG/NAME[@REV][:FILE])",
                                     default=None)
    arch: dict = help_field("tower config overrides (tiny builds, or on top of `path`)", default_factory=dict)
    options: dict = help_field("tower-specific options: select_layer, select_feature, ...", default_factory=dict)


@dataclass
class ECGConfig:
    name: str = help_field("ECG encoder in the registry (gemfactory list ecg)", default="vit1d")
    path: Optional[str] = help_field("checkpoint file with encoder weights, or ORG/NAME[@REV]:FILE on the hub",
                                     default=None)
    arch: dict = help_field("encoder architecture overrides (`tiny: true` picks the test-size twin)",
                            default_factory=dict)
    signal: dict = help_field("SignalSpec overrides: fs, n_samples, leads, normalisation", default_factory=dict)
    options: dict = help_field("encoder-specific options", default_factory=dict)


@dataclass
class ConnectorConfig:
    name: str = help_field("connector in the registry (gemfactory list connector)", default="mlp2x_gelu")
    path: Optional[str] = help_field("weight file of a trained connector (e.g. LLaVA's mm_projector.bin)",
                                     default=None)
    options: dict = help_field("connector options (each connector declares the ones it takes)",
                               default_factory=dict)
    via: Optional[str] = help_field(
        "feed this connector's output through the other modality's connector, whose weights are shared "
        "(GEM: ECG tokens -> Linear(768 -> 1024) -> the image projector): `via: image`", default=None)


@dataclass
class ModelConfig:
    llm: LLMConfig = help_field("the language model", default_factory=LLMConfig)
    vision: Optional[VisionConfig] = help_field("the vision tower; unset: no image input", default=None)
    ecg: Optional[ECGConfig] = help_field("the ECG encoder; unset: no ECG input", default=None)
    connectors: dict[str, ConnectorConfig] = help_field("connector per modality, keyed image / ecg",
                                                        default_factory=dict)
    template: Optional[str] = help_field("chat template; unset: the LLM family's default", default=None)
    layout: Literal["separate", "gem"] = help_field(
        "separate: <image> and <ecg> expand to their own tokens; gem: an <image> placeholder in a sample with "
        "an ECG expands to the ECG tokens followed by the image tokens (GEM's layout)", default="separate")

    def problems(self) -> list[tuple[str, str]]:
        """(key path under model, what is wrong) for every inconsistent setting."""
        out = [(f"connectors.{key}", "unknown modality; expected 'image' or 'ecg'")
               for key in self.connectors if key not in MODALITIES]
        for key, conn in self.connectors.items():
            if conn.via is not None and (conn.via == key or conn.via not in self.connectors):
                out.append((f"connectors.{key}.via", f"{conn.via!r} must name the other modality's connector"))
            elif conn.via is not None and self.connectors[conn.via].via is not None:
                out.append((f"connectors.{key}.via", "chains of shared connectors are not supported"))
        for modality, encoder, name in (("image", self.vision, "vision"), ("ecg", self.ecg, "ecg")):
            if encoder is not None and modality not in self.connectors:
                out.append((f"connectors.{modality}", f"required when model.{name} is set"))
        return out
