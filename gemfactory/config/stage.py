"""``stages``: one entry per training stage, each with its data, schedule and per-component tuning."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Optional

from ..errors import UnknownComponent
from ..registry import TUNE_TYPES
from .fields import help_field

COMPONENTS = ("llm", "vision", "ecg", "connectors")
TUNE_HELP = "a registered tune type (gemfactory list tune): frozen | full | lora | partial"


@dataclass(eq=False)  # Mapping's equality: equal to the dict of the components that are set
class TuneConfig(Mapping):
    """How each component trains in a stage; a component left unset gets its default (llm full,
    vision frozen, ecg and connectors full). Read like a mapping of the components that are set."""

    llm: Optional[str] = help_field(f"{TUNE_HELP} | qlora", default=None)
    vision: Optional[str] = help_field(TUNE_HELP, default=None)
    ecg: Optional[str] = help_field(TUNE_HELP, default=None)
    connectors: Optional[str] = help_field(TUNE_HELP, default=None)

    def given(self) -> dict[str, str]:
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}

    def problems(self) -> list[tuple[str, str]]:
        """(component, what is wrong) for every name that is no registered tune type."""
        out = []
        for comp, name in self.given().items():
            try:
                TUNE_TYPES.check_name(name)  # imports nothing; a broken or ambiguous plugin shows on use
            except UnknownComponent as exc:
                out.append((comp, str(exc)))
        return out

    # read as the Mapping of the components that are set (tune["llm"], tune.get("ecg"), tune.items())
    def __getitem__(self, component: str) -> str:
        return self.given()[component]

    def __iter__(self):
        return iter(self.given())

    def __len__(self) -> int:
        return len(self.given())


@dataclass
class LoraConfig:
    """LoRA settings of a stage's lora / qlora components."""

    r: int = help_field("rank of the update matrices", default=8)
    alpha: float = help_field("scaling numerator (the update is scaled by alpha / r)", default=16)
    dropout: float = help_field("dropout on the LoRA input, within [0, 1)", default=0.05)
    target_modules: Optional[dict[str, list[str]]] = help_field(
        "module names to adapt: a list (for the LLM; default: its attention and MLP linear layers) or a mapping "
        "component -> list of names relative to that component (default for towers, encoders and connectors: "
        "every nn.Linear)", default=None, accepts_list_for="llm")

    def problems(self) -> list[tuple[str, str]]:
        out = []
        if self.r < 1:
            out.append(("r", f"expected an integer >= 1, got {self.r!r}"))
        if not self.alpha > 0:
            out.append(("alpha", f"expected a number > 0, got {self.alpha!r}"))
        if not 0 <= self.dropout < 1:
            out.append(("dropout", f"expected a number within [0, 1), got {self.dropout!r}"))
        for comp, names in (self.target_modules or {}).items():
            if comp not in COMPONENTS:
                out.append((f"target_modules.{comp}", f"unknown component; expected one of {list(COMPONENTS)}"))
            elif not names or not all(names):
                out.append(("target_modules", f"expected a non-empty list of module names, got {names!r}"))
        return out


@dataclass
class PartialConfig:
    """What a ``partial`` component trains; either key or both (their union)."""

    last_n_layers: Optional[int] = help_field("the last N blocks of the component's main layer stack",
                                              default=None)
    modules: Optional[list[str]] = help_field("submodules or parameters named relative to the component, "
                                              "e.g. [lm_head, model.norm]", default=None)

    def problems(self) -> list[tuple[str, str]]:
        out = []
        if self.last_n_layers is not None and self.last_n_layers < 1:
            out.append(("last_n_layers", f"expected an integer >= 1, got {self.last_n_layers!r}"))
        if self.modules is not None and not all(self.modules):
            out.append(("modules", f"expected a list of module names, got {self.modules!r}"))
        if self.last_n_layers is None and not self.modules:
            out.append(("", "name what to train: last_n_layers and/or modules"))
        return out


@dataclass
class StageConfig:
    name: str = help_field("unique stage name (overrides address it: stages.<name>.lr=...)", default="finetune")
    epochs: float = help_field("passes over the stage's data", default=1.0)
    max_steps: int = help_field("stop after this many optimizer steps; -1: run the epochs", default=-1)
    batch_size: int = help_field("samples per device per step", default=8)
    gradient_accumulation_steps: int = help_field("micro-batches per optimizer step", default=1)
    lr: float = help_field("peak learning rate", default=2e-5)
    lr_per_component: dict[str, float] = help_field("learning rate per component (llm, vision, ecg, connectors)",
                                                    default_factory=dict)
    weight_decay: float = help_field("AdamW weight decay", default=0.0)
    warmup_ratio: float = help_field("share of the steps spent warming up", default=0.03)
    scheduler: str = help_field("HF scheduler name (cosine, linear, constant, ...)", default="cosine")
    max_length: Optional[int] = help_field("overrides data.max_length", default=None)
    train: Optional[str] = help_field("overrides data.train", default=None)
    image_folder: Optional[str] = help_field("overrides data.image_folder", default=None)
    ecg_folder: Optional[str] = help_field("overrides data.ecg_folder", default=None)
    template: Optional[str] = help_field("renders this stage's samples (LLaVA pretrains with `plain`); the "
                                         "checkpoint keeps model.template", default=None)
    tune: TuneConfig = help_field("component -> tune type (frozen | full | lora | qlora | partial, or a plugin's)",
                                  default_factory=TuneConfig)
    lora: LoraConfig = help_field("LoRA settings of the lora / qlora components", default_factory=LoraConfig)
    partial: dict[str, PartialConfig] = help_field(
        "what each `partial` component trains, e.g. partial: {llm: {last_n_layers: 2, modules: [lm_head]}}",
        default_factory=dict)

    def __post_init__(self):
        # a StageConfig written in code with plain mappings gets the same typed sections and checks
        from .typecheck import build

        where = f"stages.{self.name}"
        if isinstance(self.tune, dict):
            self.tune = build(TuneConfig, self.tune, "stage config", f"{where}.tune")
        if isinstance(self.lora, dict):
            self.lora = build(LoraConfig, self.lora, "stage config", f"{where}.lora")
        if any(isinstance(v, dict) for v in self.partial.values()):
            self.partial = build(dict[str, PartialConfig], self.partial, "stage config", f"{where}.partial")

    def problems(self) -> list[tuple[str, str]]:
        """(key path under stages.<name>, what is wrong) for every bad or inconsistent value."""
        out = [(f"tune.{comp}", problem) for comp, problem in self.tune.problems()]
        out += [(f"lora.{key}", problem) for key, problem in self.lora.problems()]
        for comp, spec in self.partial.items():
            if comp not in COMPONENTS:
                out.append((f"partial.{comp}", f"unknown component; expected one of {list(COMPONENTS)}"))
            elif self.tune.get(comp) != "partial":
                out.append((f"partial.{comp}", f"given, but stages.{self.name}.tune.{comp} is not 'partial'"))
            out += [(f"partial.{comp}" + (f".{key}" if key else ""), problem) for key, problem in spec.problems()]
        out += [(f"partial.{comp}", f"required when stages.{self.name}.tune.{comp} is 'partial' "
                                    "(last_n_layers and/or modules)")
                for comp, tune in self.tune.items() if tune == "partial" and comp not in self.partial]
        out += [(f"lr_per_component.{comp}", f"unknown component; expected one of {list(COMPONENTS)}")
                for comp in self.lr_per_component if comp not in COMPONENTS]
        if self.batch_size < 1:
            out.append(("batch_size", f"must be >= 1, got {self.batch_size}"))
        if self.lr <= 0:
            out.append(("lr", f"must be > 0, got {self.lr}"))
        return out
