"""Recipe YAML -> validated dataclasses.

A recipe has four sections: ``model``, ``data``, ``stages`` (a list, each with a unique ``name``)
and ``training``. ``base: other.yaml`` (relative to the recipe) is merged underneath; command-line
overrides use dotted paths (``training.lr=1e-4``, ``stages.finetune.epochs=2``). Unknown keys and
wrong types are errors naming the file and the key path.
"""
from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional, Union

import yaml

from .config_augment import AugmentConfig
from .errors import ConfigError

TUNE_TYPES = ("frozen", "full", "lora", "qlora", "partial")
COMPONENTS = ("llm", "vision", "ecg", "connectors")
LORA_KEYS = ("r", "alpha", "dropout", "target_modules")
PARTIAL_KEYS = ("last_n_layers", "modules")


# ---------------------------------------------------------------------------------------------
# schema
@dataclass
class LLMConfig:
    name: str = "vicuna"
    # local HF folder or hub repo id (ORG/NAME[@REVISION]) with weights; None builds from `arch`
    path: Optional[str] = None
    arch: dict = field(default_factory=dict)  # config overrides (tiny builds, or on top of path)
    tokenizer: Optional[str] = None  # tokenizer folder or hub repo id; None: `path`, else trained tiny
    # folder or hub repo id whose config.json planning (memory, --dry-run) reads while `path` is a
    # local folder not made yet (e.g. a merged delta); unused when `path` exists or is a repo id
    config: Optional[str] = None
    tokenizer_vocab_size: int = 1024  # for the tiny tokenizer trained from the data
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    attn_implementation: Optional[str] = None  # unset or auto: flash_attention_2 where installed + CUDA + bf16/fp16, else sdpa


@dataclass
class VisionConfig:
    name: str = "clip"
    path: Optional[str] = None  # HF folder / weight file, or a hub repo id (ORG/NAME[@REV][:FILE])
    arch: dict = field(default_factory=dict)
    options: dict = field(default_factory=dict)  # tower-specific: select_layer, select_feature...


@dataclass
class ECGConfig:
    name: str = "vit1d"
    path: Optional[str] = None  # checkpoint file with encoder weights, or ORG/NAME[@REV]:FILE on the hub
    arch: dict = field(default_factory=dict)
    signal: dict = field(default_factory=dict)  # SignalSpec overrides
    options: dict = field(default_factory=dict)


@dataclass
class ConnectorConfig:
    name: str = "mlp2x_gelu"
    path: Optional[str] = None  # weight file of a trained connector (e.g. LLaVA's mm_projector.bin)
    options: dict = field(default_factory=dict)
    # feed this connector's output through another modality's connector, whose weights are shared
    # (GEM: ECG tokens -> Linear(768 -> 1024) -> the image projector): `via: image`
    via: Optional[str] = None


@dataclass
class ModelConfig:
    llm: LLMConfig = field(default_factory=LLMConfig)
    vision: Optional[VisionConfig] = None
    ecg: Optional[ECGConfig] = None
    connectors: dict[str, ConnectorConfig] = field(default_factory=dict)  # keyed image / ecg
    template: Optional[str] = None  # None: the LLM family's default
    # "separate": <image> and <ecg> expand to their own tokens. "gem": an <image> placeholder in a
    # sample with an ECG expands to the ECG tokens followed by the image tokens (GEM's layout).
    layout: Literal["separate", "gem"] = "separate"


@dataclass
class DataConfig:
    train: Optional[str] = None
    eval: Optional[str] = None
    image_folder: str = "."
    ecg_folder: str = "."
    max_length: int = 2048
    # what to do with a sample that cannot be used (missing file, bad record, no supervised token)
    on_bad_sample: Literal["skip", "error"] = "skip"
    max_bad_fraction: float = 0.05  # a training run stops once more than this share was skipped
    # ViP-LLaVA augmentation: chance that an image sample without visual_prompts gets one random
    # prompt drawn on it (seeded from the sample id)
    random_visual_prompts: float = 0.0
    num_workers: int = 0
    # padding-free training: each batch's samples are packed into rows of at most pack_tokens
    # tokens (default: max_length); attention and positions restart at every sample
    packing: bool = False
    pack_tokens: Optional[int] = None
    # training order: none (shuffled), length (similar lengths together) or modality_length
    # (text / ECG / image / both grouped first, then by length); deterministic for seed + epoch
    group_by: Literal["none", "length", "modality_length"] = "none"
    # a stage that keeps the vision tower / ECG encoder frozen computes each input's features once
    # and reuses them from safetensors shards in feature_cache_dir (default <output_dir>/feature_cache)
    feature_cache: bool = False
    feature_cache_dir: Optional[str] = None
    # size cap of feature_cache_dir in GB (all towers together): least recently used shards are
    # removed once a write takes the folder over it; unset: no cap (see `gemfactory cache prune`)
    feature_cache_max_gb: Optional[float] = None
    # ECG augmentation of training samples (gain, noise, baseline wander, time shift, crop, lead
    # dropout), each with a probability `p` (default 0: off); see gemfactory/config_augment.py
    augment: AugmentConfig = field(default_factory=AugmentConfig)


@dataclass
class StageConfig:
    name: str = "finetune"
    epochs: float = 1.0
    max_steps: int = -1
    batch_size: int = 8  # per device
    gradient_accumulation_steps: int = 1
    lr: float = 2e-5
    lr_per_component: dict[str, float] = field(default_factory=dict)
    weight_decay: float = 0.0
    warmup_ratio: float = 0.03
    scheduler: str = "cosine"
    max_length: Optional[int] = None  # overrides data.max_length
    train: Optional[str] = None  # overrides data.train
    image_folder: Optional[str] = None  # overrides data.image_folder
    ecg_folder: Optional[str] = None  # overrides data.ecg_folder
    # renders this stage's samples (LLaVA pretrains with `plain`); the checkpoint keeps model.template
    template: Optional[str] = None
    # component -> frozen | full | lora | qlora | partial (unnamed: llm full, vision frozen, ecg and
    # connectors full)
    tune: dict[str, str] = field(default_factory=dict)
    # LoRA settings of the stage's lora / qlora components: r (8), alpha (16), dropout (0.05),
    # target_modules: a list of module names for the LLM (default: its attention and MLP linear
    # layers), or a mapping component -> list of names relative to that component (default for
    # towers, encoders and connectors: every nn.Linear)
    lora: dict = field(default_factory=dict)
    # what a `partial` component trains, per component; either key or both (their union):
    #   last_n_layers: N      the last N blocks of the component's main layer stack
    #   modules: [a.b, ...]   submodules or parameters named relative to the component
    # e.g. partial: {llm: {last_n_layers: 2, modules: [lm_head, model.norm]}}
    partial: dict[str, dict] = field(default_factory=dict)


@dataclass
class TrainingConfig:
    output_dir: str = "runs/gemfactory"
    seed: int = 42
    deepspeed: Optional[str] = None  # zero2 / zero3 / zero3_offload or a JSON path
    bf16: bool = False
    logging_steps: int = 10
    save_steps: int = 0  # 0: save at the end of each stage only; N: also a resumable checkpoint every N steps
    save_total_limit: int = 2  # resumable checkpoints kept per stage (the newest)
    gradient_checkpointing: bool = False
    # lm_head + cross-entropy over the labelled tokens in chunks, so the [tokens, vocab] logits are
    # never held whole (liger-kernel's fused kernel on CUDA when installed); training loss only
    fused_loss: bool = False
    report_to: list[str] = field(default_factory=lambda: ["tensorboard"])  # [] for none


@dataclass
class Recipe:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    stages: list[StageConfig] = field(default_factory=lambda: [StageConfig()])
    training: TrainingConfig = field(default_factory=TrainingConfig)
    description: str = ""
    source: str = field(default="<dict>", metadata={"internal": True})

    def stage(self, name: str) -> StageConfig:
        for s in self.stages:
            if s.name == name:
                return s
        raise ConfigError(f"{self.source}: no stage named {name!r} ({[s.name for s in self.stages]})")

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d.pop("source")
        return d


# ---------------------------------------------------------------------------------------------
# loading
def load_recipe(path: str | Path, overrides: list[str] = ()) -> Recipe:
    path = Path(path)
    raw = _read_with_bases(path, seen=())
    for item in overrides:
        apply_override(raw, item, source=str(path))
    return recipe_from_dict(raw, source=str(path))


def recipe_from_dict(raw: dict, source: str = "<dict>") -> Recipe:
    raw = dict(raw)
    raw.pop("base", None)
    recipe = _build(Recipe, raw, source, "")
    recipe.source = source
    _check_recipe(recipe)
    return recipe


def _read_yaml(path: Path) -> dict:
    if not path.is_file():
        raise ConfigError(f"recipe not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}:{where}: malformed YAML: {problem}") from None
    if data is None:
        raise ConfigError(f"{path}: the recipe is empty")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def _read_with_bases(path: Path, seen: tuple) -> dict:
    resolved = path.resolve()
    if resolved in seen:
        raise ConfigError(f"{path}: 'base:' inheritance loops back to itself")
    data = _read_yaml(path)
    base = data.pop("base", None)
    if base is None:
        return data
    if not isinstance(base, str):
        raise ConfigError(f"{path}: base: expected a recipe path, got {base!r}")
    parent = _read_with_bases(path.parent / base, seen + (resolved,))
    return deep_merge(parent, data)


def deep_merge(base: dict, top: dict) -> dict:
    """Mappings merge key by key; stages merge by name; anything else in ``top`` replaces.

    A component entry naming another component (``model.ecg: {name: other}``) replaces the
    inherited entry instead: the inherited ``arch`` / ``options`` belong to the old component.
    """
    out = dict(base)
    for key, value in top.items():
        if key == "stages" and isinstance(value, list) and isinstance(out.get(key), list):
            out[key] = _merge_stages(out[key], value)
        elif isinstance(value, dict) and isinstance(out.get(key), dict) \
                and value.get("name", out[key].get("name")) == out[key].get("name"):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _merge_stages(base: list, top: list) -> list:
    by_name = {s.get("name"): s for s in base if isinstance(s, dict)}
    merged = []
    for stage in top:
        if isinstance(stage, dict) and stage.get("name") in by_name:
            merged.append(deep_merge(by_name[stage["name"]], stage))
        else:
            merged.append(stage)
    return merged


def apply_override(raw: dict, item: str, source: str = "<overrides>") -> None:
    """Apply ``a.b.c=value`` (value parsed as YAML) to the raw recipe mapping in place."""
    if "=" not in item:
        raise ConfigError(f"override {item!r}: expected KEY=VALUE, e.g. training.seed=1")
    key, _, text = item.partition("=")
    parts = key.strip().split(".")
    if not all(parts):
        raise ConfigError(f"override {item!r}: empty part in key {key!r}")
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        value = text
    node: Any = raw
    for depth, part in enumerate(parts[:-1]):
        where = ".".join(parts[: depth + 1])
        if isinstance(node, list):
            node = _stage_by_name(node, part, item)
            continue
        if not isinstance(node, dict):
            raise ConfigError(f"override {item!r}: {where} is not a section")
        if part == "stages" and part not in node:
            node[part] = [dict(name=StageConfig.name)]
        node = node.setdefault(part, {})
    last = parts[-1]
    if isinstance(node, list):
        raise ConfigError(f"override {item!r}: name a stage, e.g. stages.<name>.{last}=...")
    if not isinstance(node, dict):
        raise ConfigError(f"override {item!r}: {'.'.join(parts[:-1])} is not a section")
    node[last] = value


def _stage_by_name(stages: list, part: str, item: str) -> dict:
    names = [s.get("name", StageConfig.name) if isinstance(s, dict) else None for s in stages]
    if part in names:
        return stages[names.index(part)]
    if part.isdigit() and int(part) < len(stages):
        return stages[int(part)]
    raise ConfigError(f"override {item!r}: no stage named {part!r} (stages: {names})")


# ---------------------------------------------------------------------------------------------
# validation
def _type_name(tp) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(tp) if a is not type(None)) + " | null"
    if origin is list:
        return f"list of {_type_name(typing.get_args(tp)[0])}"
    if origin is dict:
        return "mapping"
    if dataclasses.is_dataclass(tp):
        return "mapping"
    return getattr(tp, "__name__", str(tp))


def _build(tp, value, source: str, path: str):
    where = f"{source}: {path or '<top>'}"
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _build(args[0], value, source, path)
    if origin is Literal:
        allowed = typing.get_args(tp)
        if value not in allowed:
            close = difflib.get_close_matches(str(value), [str(a) for a in allowed], n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"{where}: {value!r} is not one of {list(allowed)}{hint}")
        return value
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {_show(value)}")
        fields = {f.name: f for f in dataclasses.fields(tp) if not f.metadata.get("internal")}
        kwargs = {}
        for key, sub in value.items():
            if key not in fields:
                close = difflib.get_close_matches(str(key), list(fields), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                known = ", ".join(fields)
                raise ConfigError(
                    f"{source}: {_join(path, key)}: unknown key{hint}; expected one of: {known}"
                )
            kwargs[key] = _build(_hints(tp)[key], sub, source, _join(path, key))
        return tp(**kwargs)
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {_show(value)}")
        (item_tp,) = typing.get_args(tp)
        return [_build(item_tp, v, source, f"{path}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {_show(value)}")
        key_tp, val_tp = typing.get_args(tp)
        return {str(k): _build(val_tp, v, source, _join(path, str(k))) for k, v in value.items()}
    if tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {_show(value)}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            # YAML reads 1e-4 (no dot) as a string; accept numeric strings for floats
            try:
                return float(value) if isinstance(value, str) else _bad(where, tp, value)
            except ValueError:
                _bad(where, tp, value)
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            _bad(where, tp, value)
        return value
    if tp is bool:
        if not isinstance(value, bool):
            _bad(where, tp, value)
        return value
    if tp is str:
        if not isinstance(value, str):
            _bad(where, tp, value)
        return value
    raise TypeError(f"unsupported schema type {tp!r} at {path}")


_HINTS: dict = {}


def _hints(tp) -> dict:
    if tp not in _HINTS:
        _HINTS[tp] = typing.get_type_hints(tp)
    return _HINTS[tp]


def _bad(where: str, tp, value):
    raise ConfigError(f"{where}: expected {_type_name(tp)}, got {_show(value)}")


def _show(value) -> str:
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{type(value).__name__} {text}"


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else str(key)


def _check_recipe(r: Recipe) -> None:
    src = r.source
    if not r.stages:
        raise ConfigError(f"{src}: stages: at least one stage is required")
    names = [s.name for s in r.stages]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise ConfigError(f"{src}: stages: duplicate stage names {sorted(dup)}")
    for i, s in enumerate(r.stages):
        for comp, tune in s.tune.items():
            if comp not in COMPONENTS:
                raise ConfigError(
                    f"{src}: stages.{s.name}.tune.{comp}: unknown component; expected one of {list(COMPONENTS)}"
                )
            if tune not in TUNE_TYPES:
                raise ConfigError(
                    f"{src}: stages.{s.name}.tune.{comp}: {tune!r} is not one of {list(TUNE_TYPES)}"
                )
        _check_lora(src, s)
        _check_partial(src, s)
        for comp in s.lr_per_component:
            if comp not in COMPONENTS:
                raise ConfigError(
                    f"{src}: stages.{s.name}.lr_per_component.{comp}: unknown component; "
                    f"expected one of {list(COMPONENTS)}"
                )
        if s.batch_size < 1:
            raise ConfigError(f"{src}: stages.{s.name}.batch_size: must be >= 1, got {s.batch_size}")
        if s.lr <= 0:
            raise ConfigError(f"{src}: stages.{s.name}.lr: must be > 0, got {s.lr}")
    for key in r.model.connectors:
        if key not in ("image", "ecg"):
            raise ConfigError(
                f"{src}: model.connectors.{key}: unknown modality; expected 'image' or 'ecg'"
            )
    for key, conn in r.model.connectors.items():
        if conn.via is not None and (conn.via == key or conn.via not in r.model.connectors):
            raise ConfigError(
                f"{src}: model.connectors.{key}.via: {conn.via!r} must name the other modality's connector"
            )
        if conn.via is not None and r.model.connectors[conn.via].via is not None:
            raise ConfigError(f"{src}: model.connectors.{key}.via: chains of shared connectors are not supported")
    if r.model.vision is not None and "image" not in r.model.connectors:
        raise ConfigError(f"{src}: model.connectors.image: required when model.vision is set")
    if r.model.ecg is not None and "ecg" not in r.model.connectors:
        raise ConfigError(f"{src}: model.connectors.ecg: required when model.ecg is set")
    if not 0 <= r.data.max_bad_fraction <= 1:
        raise ConfigError(f"{src}: data.max_bad_fraction: must be within [0, 1]")
    if r.data.feature_cache_max_gb is not None and not r.data.feature_cache_max_gb > 0:
        raise ConfigError(f"{src}: data.feature_cache_max_gb: expected a positive number of GB, "
                          f"got {r.data.feature_cache_max_gb}")
    if r.data.pack_tokens is not None and (not r.data.packing or r.data.pack_tokens < 1):
        raise ConfigError(f"{src}: data.pack_tokens: needs data.packing: true and a value >= 1, "
                          f"got {r.data.pack_tokens}")
    for key, problem in r.data.augment.problems():
        raise ConfigError(f"{src}: data.augment.{key}: {problem}")
    if not 0 <= r.data.random_visual_prompts <= 1:
        raise ConfigError(f"{src}: data.random_visual_prompts: must be within [0, 1], "
                          f"got {r.data.random_visual_prompts}")


def _check_lora(src: str, s: StageConfig) -> None:
    where = f"{src}: stages.{s.name}.lora"
    for key, value in s.lora.items():
        if key not in LORA_KEYS:
            close = difflib.get_close_matches(str(key), LORA_KEYS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"{where}.{key}: unknown key{hint}; expected one of: {', '.join(LORA_KEYS)}")
    r = s.lora.get("r", 8)
    if isinstance(r, bool) or not isinstance(r, int) or r < 1:
        raise ConfigError(f"{where}.r: expected an integer >= 1, got {r!r}")
    alpha = s.lora.get("alpha", 16)
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or alpha <= 0:
        raise ConfigError(f"{where}.alpha: expected a number > 0, got {alpha!r}")
    dropout = s.lora.get("dropout", 0.05)
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
        raise ConfigError(f"{where}.dropout: expected a number within [0, 1), got {dropout!r}")
    targets = s.lora.get("target_modules")
    if targets is None:
        return
    if isinstance(targets, list):
        targets = {"llm": targets}
    if not isinstance(targets, dict):
        raise ConfigError(f"{where}.target_modules: expected a list of module names or a mapping "
                          f"component -> list, got {targets!r}")
    for comp, names in targets.items():
        if comp not in COMPONENTS:
            raise ConfigError(f"{where}.target_modules.{comp}: unknown component; expected one of {list(COMPONENTS)}")
        if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
            raise ConfigError(f"{where}.target_modules: expected a non-empty list of module names, got {names!r}")


def _check_partial(src: str, s: StageConfig) -> None:
    where = f"{src}: stages.{s.name}.partial"
    for comp, spec in s.partial.items():
        if comp not in COMPONENTS:
            raise ConfigError(f"{where}.{comp}: unknown component; expected one of {list(COMPONENTS)}")
        if s.tune.get(comp) != "partial":
            raise ConfigError(f"{where}.{comp}: given, but stages.{s.name}.tune.{comp} is not 'partial'")
        for key in spec:
            if key not in PARTIAL_KEYS:
                close = difflib.get_close_matches(str(key), PARTIAL_KEYS, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ConfigError(f"{where}.{comp}.{key}: unknown key{hint}; expected one of: "
                                  f"{', '.join(PARTIAL_KEYS)}")
        n = spec.get("last_n_layers")
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
            raise ConfigError(f"{where}.{comp}.last_n_layers: expected an integer >= 1, got {n!r}")
        mods = spec.get("modules")
        if mods is not None and (not isinstance(mods, list) or not all(isinstance(m, str) and m for m in mods)):
            raise ConfigError(f"{where}.{comp}.modules: expected a list of module names, got {mods!r}")
        if n is None and not mods:
            raise ConfigError(f"{where}.{comp}: name what to train: last_n_layers and/or modules")
    for comp, tune in s.tune.items():
        if tune == "partial" and comp not in s.partial:
            raise ConfigError(f"{src}: stages.{s.name}.partial.{comp}: required when "
                              f"stages.{s.name}.tune.{comp} is 'partial' (last_n_layers and/or modules)")
