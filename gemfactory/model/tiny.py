"""Tiny twins of recipes: every architecture choice of a recipe, at test size, with no weights.

:func:`shrink` keeps what makes a recipe *this* model -- LLM family, vision tower, ECG encoder,
connectors, template, layout, the layers a tower is read at (``select_layer`` / ``layers`` /
``select_feature``), the stage list and each stage's tune types -- and replaces what only makes it
big: weight and tokenizer paths are dropped, the LLM takes its family's ``tiny_arch`` (a trained
byte-level BPE stands in for the tokenizer), towers and encoders take their tiny configs, the data
becomes a synthetic dataset and each stage a one-step run. Choices that cost nothing at tiny size
are kept: non-size keys of the recipe's ``arch`` entries, and -- when a weight folder happens to be
present -- the real LLM's attention/rotary settings and key/value-head ratio, and the real tower's
depth (so a layer index out of range for the real tower fails here too).

A tower is made deep enough for the deepest layer the recipe reads (ViP-LLaVA's ``-11`` needs 11
blocks), so every selected index still names a block output rather than the embeddings.

:func:`tiny_check` builds the twin, runs one optimiser step per stage on a collated batch and
returns one summary line per component and per stage; ``gemfactory recipe check --tiny`` prints
them. :func:`missing_local_paths` lists the local files a full-size recipe needs, the ones the
twin does without.
"""
from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import tempfile
from pathlib import Path
from typing import Iterator, NamedTuple

from ..config import Recipe, recipe_from_dict
from ..errors import ConfigError, DataError

log = logging.getLogger(__name__)

TINY_VOCAB = 512  # byte-level BPE: 256 bytes + specials + a few hundred merges
TINY_MAX_LENGTH = 512
TINY_BATCH = 4  # one sample per kind: ECG + image, ECG, image, text
MAX_TINY_DEPTH = 48  # deepest tower a tiny check builds when the real depth is unknown
SYNTH_TRAIN = 24  # records in the synthetic data of a tiny check
FULL_ECG_SAMPLES = 5000  # the full-size 10 s x 500 Hz spec; replaced by the encoder twin's own

# LLM config keys that only set the size; anything else in a recipe's llm.arch is kept
LLM_SIZE_KEYS = frozenset({
    "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
    "num_key_value_heads", "head_dim", "max_position_embeddings", "vocab_size", "n_embd", "n_layer",
    "n_head", "n_positions", "n_inner", "sliding_window", "max_window_layers",
    "bos_token_id", "eos_token_id", "pad_token_id",
})
# settings read from a real LLM config (when its folder exists) that define the architecture
LLM_KEEP_FROM_WEIGHTS = (
    "hidden_act", "rope_parameters", "partial_rotary_factor", "attention_bias", "mlp_bias",
    "use_qkv_bias", "qk_layernorm", "rms_norm_eps", "layer_norm_eps", "use_sliding_window",
)
# HF vision-config keys that only set the size
HF_TOWER_SIZE_KEYS = frozenset({
    "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "image_size",
    "patch_size", "projection_dim",
})
OPEN_CLIP_SIZE_KEYS = frozenset({"width", "layers", "head_width", "patch_size", "image_size", "embed_dim",
                                 "mlp_ratio"})
TIMM_SIZE_KEYS = frozenset({"img_size", "patch_size", "embed_dim", "depth", "num_heads", "depths", "dims",
                            "layers", "mlp_ratio", "pretrained_cfg_overlay"})
# timm modules whose models take ViT keyword arguments, and the tiny settings for them
TIMM_VIT_MODULES = ("vision_transformer", "vision_transformer_hybrid", "deit", "eva", "beit")
TIMM_TINY = {
    "vit": dict(img_size=32, patch_size=16, embed_dim=32, num_heads=2),
    "convnext": dict(depths=[1, 1, 1, 1], dims=[16, 32, 48, 64]),
    "resnet": dict(layers=[1, 1, 1, 1]),
}
# ECG-encoder arch keys that are choices rather than sizes
ECG_KEEP = {"vit1d": ("output_tokens", "output", "patch_size"), "resnet1d": ("norm", "stem_pool")}


# ---------------------------------------------------------------------------------------------
# shrinking
def shrink(recipe: Recipe, data_dir: str | Path | None = None, output_dir: str | Path | None = None) -> Recipe:
    """The tiny twin of ``recipe`` (a new Recipe; ``recipe`` is not changed).

    ``data_dir``: a synthetic dataset folder (:func:`gemfactory.data.synth.synthesize`); the twin
    trains on its ``train.json`` -- in GEM's one-placeholder form for ``layout: gem`` recipes
    (:func:`gem_layout_items`, written next to it). Without it, the data paths are cleared.
    """
    from ..registry import LLMS

    d = recipe.to_dict()
    model = d["model"]
    family = LLMS.get(model["llm"]["name"])()
    model["llm"] = _tiny_llm(model["llm"], family)
    llm_width = int({**family.tiny_arch, **model["llm"]["arch"]}.get("hidden_size", 64))
    if model["vision"] is not None:
        model["vision"] = _tiny_vision(model["vision"])
    if model["ecg"] is not None:
        model["ecg"] = _tiny_ecg(model["ecg"])
    for modality, conn in model["connectors"].items():
        model["connectors"][modality] = _tiny_connector(conn)
        if conn["name"] == "identity":
            _match_identity_width(model, modality, llm_width)

    data = d["data"]
    train = image_folder = ecg_folder = None
    if data_dir is not None:
        data_dir = Path(data_dir)
        train = str(data_dir / "train.json")
        if model["layout"] == "gem":
            train = str(_gem_layout_file(data_dir))
        image_folder, ecg_folder = str(data_dir / "images"), str(data_dir / "ecg")
    d["data"] = {**data, "train": train, "eval": None, "image_folder": image_folder or ".",
                 "ecg_folder": ecg_folder or ".", "max_length": min(data["max_length"], TINY_MAX_LENGTH),
                 "on_bad_sample": "skip", "max_bad_fraction": 1.0, "num_workers": 0}
    for stage in d["stages"]:
        stage.update(epochs=1.0, max_steps=1, batch_size=min(stage["batch_size"], TINY_BATCH),
                     gradient_accumulation_steps=1, max_length=None, train=None)
        for key in ("image_folder", "ecg_folder"):  # per-stage data folders, where the schema has them
            if key in stage:
                stage[key] = None
    d["training"].update(output_dir=str(output_dir or Path(tempfile.gettempdir()) / "gemfactory-tiny"),
                         deepspeed=None, bf16=False, report_to=[], save_steps=0, logging_steps=1)
    d["description"] = f"tiny twin of {recipe.source}"
    return recipe_from_dict(d, source=f"{recipe.source} (tiny)")


def _tiny_llm(llm: dict, family) -> dict:
    arch = {k: v for k, v in llm["arch"].items() if k not in LLM_SIZE_KEYS}
    real = _real_llm_config(llm["path"])
    if real is not None:
        values = real.to_dict()
        for key in LLM_KEEP_FROM_WEIGHTS:
            if values.get(key) is not None:
                arch.setdefault(key, values[key])
        heads = int(family.tiny_arch.get("num_attention_heads", 4))
        real_heads, real_kv = values.get("num_attention_heads"), values.get("num_key_value_heads")
        if real_heads and real_kv and "num_key_value_heads" in family.tiny_arch:
            kv = max(1, heads * int(real_kv) // int(real_heads))  # keep the query/key-value ratio
            while heads % kv:
                kv -= 1
            arch.setdefault("num_key_value_heads", kv)
    attn = llm["attn_implementation"]
    return {**llm, "path": None, "tokenizer": None, "arch": arch, "dtype": "float32",
            "tokenizer_vocab_size": min(llm["tokenizer_vocab_size"], TINY_VOCAB),
            "attn_implementation": attn if attn in (None, "eager", "sdpa") else None}


def _real_config_folder(path: str | None, key: str) -> str | None:
    """A folder with the real model's config: the local path, its cached hub snapshot, or the
    config gemfactory ships for that repo; None when there is none (the tiny defaults apply)."""
    from ..hub import HubMissing, is_hub_ref, planning_source

    if not path:
        return None
    if not is_hub_ref(path):
        return path if Path(path).exists() else None
    try:
        return planning_source(path, key, "config")[0]
    except HubMissing:
        return None


def _real_llm_config(path: str | None):
    path = _real_config_folder(path, "model.llm.path")
    if not path or not (Path(path) / "config.json").is_file():
        return None
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(path)


def layer_indices(options: dict) -> tuple[str, list]:
    """(options key, hidden-state indices) a tower is read at: ``layers`` or ``select_layer``."""
    if options.get("layers") is not None:
        layers = options["layers"]
        return "layers", list(layers) if isinstance(layers, (list, tuple)) else [layers]
    if "select_layer" in options:
        return "select_layer", [options["select_layer"]] if options["select_layer"] is not None else []
    return "select_layer", []


def _needed_depth(options: dict, default_select: int | None) -> tuple[str, list, int]:
    key, layers = layer_indices(options)
    if key == "select_layer" and "select_layer" not in options and default_select is not None:
        layers = [default_select]
    ints = [l for l in layers if isinstance(l, int) and not isinstance(l, bool)]
    # index -k (or k) names the output of a block only when the tower has at least k blocks
    return key, layers, max((abs(l) for l in ints), default=0)


def _depth(tiny_default: int, need: int, real: int | None, key: str, layers: list) -> int:
    if real is not None:  # out-of-range indices then fail against the real depth
        return max(1, min(max(tiny_default, need), real))
    if need > MAX_TINY_DEPTH:
        shown = layers[0] if key == "select_layer" else layers
        raise ConfigError(
            f"model.vision.options.{key}: {shown!r} needs a tower of at least {need} layers; the tiny "
            f"check builds at most {MAX_TINY_DEPTH} when the real depth is unknown (no local "
            f"model.vision.path), and common towers have 12 to 40"
        )
    return max(tiny_default, need)


def _tiny_vision(vision: dict) -> dict:
    from ..registry import VISION_TOWERS
    from ..vision.clip import CLIPTower
    from ..vision.open_clip import OpenCLIPTower
    from ..vision.siglip import SigLIPTower
    from ..vision.timm import TimmTower

    cls = VISION_TOWERS.get(vision["name"])
    options = dict(vision["options"])
    path = _real_config_folder(vision["path"], "model.vision.path")
    arch = dict(vision["arch"])
    if issubclass(cls, (CLIPTower, SigLIPTower)):
        key, layers, need = _needed_depth(options, cls.default_options.get("select_layer"))
        real = arch.get("num_hidden_layers")
        if path is not None:
            full, _ = cls.resolve(arch, options, path)
            config_cls = _hf_vision_config(cls)
            real = config_cls(**full).num_hidden_layers
        kept = {k: v for k, v in arch.items() if k not in HF_TOWER_SIZE_KEYS}
        depth = _depth(cls.tiny_arch["num_hidden_layers"], need, real, key, layers)
        arch = {**cls.tiny_arch, **kept, "num_hidden_layers": depth}
    elif issubclass(cls, OpenCLIPTower):
        key, layers, need = _needed_depth(options, cls.default_options.get("select_layer"))
        full, _ = cls.resolve(arch, options, None)  # the named config says the real depth
        kept = {k: v for k, v in arch.items() if k not in OPEN_CLIP_SIZE_KEYS}
        depth = _depth(cls.tiny_arch["layers"], need, int(full.get("layers", 12)), key, layers)
        arch = {**cls.tiny_arch, **kept, "model_name": full["model_name"], "layers": depth}
    elif issubclass(cls, TimmTower):
        arch = _tiny_timm(arch, options)
    else:  # a plugin tower: its own tiny config
        arch = dict(getattr(cls, "tiny_arch", {}))
    return {**vision, "path": None, "arch": arch, "options": options}


def _hf_vision_config(cls):
    from transformers import CLIPVisionConfig, SiglipVisionConfig

    from ..vision.clip import CLIPTower

    return CLIPVisionConfig if issubclass(cls, CLIPTower) else SiglipVisionConfig


def _tiny_timm(arch: dict, options: dict) -> dict:
    import timm
    import torch

    from ..vision.timm import TimmTower

    name = arch.get("model_name")
    if not name:
        raise ConfigError("model.vision.arch.model_name: required for the timm tower")
    kept = {k: v for k, v in arch.items() if k not in TIMM_SIZE_KEYS}
    base = str(name).split(".")[0]
    if timm.models.is_model_in_modules(base, list(TIMM_VIT_MODULES)):
        key, layers, need = _needed_depth(options, None)
        real = arch.get("depth")
        if real is None and need:
            try:  # the real block count, from a weightless build
                with torch.device("meta"):
                    real = len(timm.create_model(name, pretrained=False, num_classes=0).feature_info)
            except Exception:  # noqa: BLE001 -- the tower itself reports bad names and kwargs
                real = None
        depth = _depth(2, need, real, key, layers)
        return {**kept, **TIMM_TINY["vit"], "depth": depth}
    for kind in ("convnext", "resnet"):
        if timm.models.is_model_in_modules(base, [kind]):
            return {**kept, **TIMM_TINY[kind]}
    # no tiny settings known for this kind of model: stand in with timm's tiny ViT
    log.warning("timm model %r: no tiny settings for its kind; the tiny check stands in with %r",
                name, TimmTower.tiny_arch["model_name"])
    return dict(TimmTower.tiny_arch)


def _tiny_ecg(ecg: dict) -> dict:
    from ..registry import ECG_ENCODERS

    cls = ECG_ENCODERS.get(ecg["name"])
    full_arch, spec = cls.resolve(ecg["arch"], ecg["signal"])  # validates the recipe's keys
    twin = dict(getattr(cls, "tiny_arch", {}))
    signal = dict(ecg["signal"])
    if spec.n_samples == FULL_ECG_SAMPLES:  # the full-size spec: the twin's shorter one
        signal.update(twin.get("_signal", {}))
    arch = {"tiny": True}
    n_samples = signal.get("n_samples", spec.n_samples)
    for key in ECG_KEEP.get(ecg["name"], ()):
        if key not in ecg["arch"]:
            continue
        if key == "patch_size" and n_samples % int(full_arch[key]):
            continue  # does not divide the twin's signal: the twin's own patch size
        arch[key] = full_arch[key]
    return {**ecg, "path": None, "arch": arch, "signal": signal}


def _tiny_connector(conn: dict) -> dict:
    options = dict(conn["options"])
    if conn["name"] == "resampler":
        options["num_queries"] = min(int(options.get("num_queries", 64)), 8)
        options.pop("heads", None)  # must divide the LLM width, which shrank
    out = {**conn, "options": options}
    if "path" in out:  # trained connector weights, where the schema has them
        out["path"] = None
    return out


def _match_identity_width(model: dict, modality: str, width: int) -> None:
    """An identity connector needs encoder width == LLM width: give the tiny encoder that width."""
    if modality == "image" and model["vision"] is not None:
        arch, options = model["vision"]["arch"], model["vision"]["options"]
        n_layers = len(layer_indices(options)[1]) or 1
        if "hidden_size" in arch and width % n_layers == 0:
            arch["hidden_size"] = width // n_layers
            arch["num_attention_heads"] = math.gcd(arch["hidden_size"], arch.get("num_attention_heads", 4))
    elif modality == "ecg" and model["ecg"] is not None and model["ecg"]["name"] == "vit1d":
        model["ecg"]["arch"]["width"] = width
        model["ecg"]["arch"]["heads"] = math.gcd(width, 4)


# ---------------------------------------------------------------------------------------------
# synthetic data
def gem_layout_items(items: list[dict]) -> list[dict]:
    """Samples in GEM's form: a sample with an ECG has one ``<image>`` placeholder standing for
    the ECG tokens (then the image tokens, when it has an image) instead of ``<ecg>``."""
    out = []
    for item in items:
        item = json.loads(json.dumps(item))
        if item.get("ecg"):
            for turn in item.get("conversations", []):
                if turn.get("from") in ("human", "user") and isinstance(turn.get("value"), str):
                    text = turn["value"].replace("<ecg>\n", "").replace("<ecg>", "")
                    if "<image>" not in text:
                        text = "<image>\n" + text
                    turn["value"] = text
                    break
        out.append(item)
    return out


def _gem_layout_file(data_dir: Path) -> Path:
    target = data_dir / "train_gem_layout.json"
    source = data_dir / "train.json"
    if source.is_file() and (not target.is_file() or target.stat().st_mtime < source.stat().st_mtime):
        items = json.loads(source.read_text())
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(gem_layout_items(items), indent=1))
        tmp.replace(target)
    return target


@contextlib.contextmanager
def synthetic_data(folder: str | Path | None = None, n_train: int = SYNTH_TRAIN) -> Iterator[Path]:
    """A synthetic dataset folder: ``folder`` (made there unless it has a train.json), else a
    temporary one removed afterwards."""
    from ..data.synth import synthesize

    if folder is not None:
        folder = Path(folder)
        if not (folder / "train.json").is_file():
            synthesize(folder, n_train=n_train, n_test=0, seed=0)
        yield folder
        return
    with tempfile.TemporaryDirectory(prefix="gemfactory-tiny-") as tmp:
        synthesize(tmp, n_train=n_train, n_test=0, seed=0)
        yield Path(tmp)


# ---------------------------------------------------------------------------------------------
# the check
def tiny_check(recipe: Recipe, data_dir: str | Path) -> list[str]:
    """Build the tiny twin, run one optimiser step per stage; summary lines (the last is ``ok``).

    Raises a GemError naming the recipe key when the architecture cannot be built or trained.
    """
    import torch

    from ..train.trainer import deepspeed_config

    deepspeed_config(recipe.training.deepspeed)  # a bad name fails here, not on the GPU cluster
    tiny = shrink(recipe, data_dir)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tensors this small only lose time to thread hand-offs on a busy CPU
    try:
        return _run_twin(tiny)
    finally:
        torch.set_num_threads(threads)


def _run_twin(tiny: Recipe) -> list[str]:
    import torch

    from ..data.dataset import Collator
    from ..data.processor import Processor
    from ..registry import TEMPLATES
    from ..train.tuning import apply_tuning, component_of, parameter_counts
    from .builder import build_model, recipe_template, tokenizer_for_recipe

    template = recipe_template(tiny)
    tokenizer = tokenizer_for_recipe(tiny, template)  # the twin has no paths: a BPE trained on its data
    torch.manual_seed(tiny.training.seed)
    model = build_model(tiny.model, tokenizer)
    if tiny.training.gradient_checkpointing:  # as the trainer turns it on
        enable = getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable
        enable()

    batches: dict[str, tuple] = {}  # template name -> (features, kinds, collated batch)
    counts = parameter_counts(model)
    lines = _component_lines(tiny, model, tokenizer, template.name, counts)
    for stage in tiny.stages:
        # a stage may render its samples with its own template (LLaVA pretrains with `plain`)
        stage_template = TEMPLATES.get(getattr(stage, "template", None) or template.name)()
        if stage_template.name not in batches:
            processor = Processor.from_model(model, tokenizer, stage_template, tiny.data.max_length)
            feats, kinds = _pick_batch(processor, tiny)
            batches[stage_template.name] = feats, kinds, Collator(tokenizer.pad_token_id)(feats)
        feats, kinds, batch = batches[stage_template.name]
        tunes = apply_tuning(model, stage)
        groups: dict[tuple, list] = {}
        for name, p in model.named_parameters():
            if p.requires_grad:
                lr = stage.lr_per_component.get(component_of(name), stage.lr)
                groups.setdefault((lr, stage.weight_decay), []).append(p)
        optimizer = torch.optim.AdamW(
            [{"params": ps, "lr": lr, "weight_decay": wd} for (lr, wd), ps in groups.items()])
        model.train()
        loss = model(**batch).loss
        if not torch.isfinite(loss):
            raise ConfigError(f"stages.{stage.name}: the tiny twin's loss is {loss.item()} on its first batch")
        loss.backward()
        for comp, tune in tunes.items():
            module = {"llm": model.language_model, "vision": model.vision_tower,
                      "ecg": model.ecg_encoder, "connectors": model.connectors}[comp]
            trained = [p for p in module.parameters() if p.requires_grad]
            if trained:  # (identity connectors have no parameters at all)
                if not any(p.grad is not None and torch.isfinite(p.grad).all() for p in trained):
                    raise ConfigError(
                        f"stages.{stage.name}.tune.{comp}: {tune}, but no gradient reaches the {comp} "
                        f"in the tiny twin (is it used by the samples?)"
                    )
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        lines.append(
            f"stage {stage.name}: tune {', '.join(f'{k} {v}' for k, v in tunes.items())}"
            f"{'' if stage_template.name == template.name else ', template ' + stage_template.name}; one step on "
            f"{len(feats)} samples ({', '.join(kinds)}): loss {loss.item():.3f}, {trainable:,} trainable parameters"
        )
    lines.append("ok")
    return lines


def _pick_batch(processor, recipe: Recipe) -> tuple[list[dict], list[str]]:
    """One usable sample of each kind (ECG + image, ECG, image, text) the model can read."""
    from ..data.dataset import load_items

    feats, kinds = [], []
    seen = set()
    for item in load_items(recipe.data.train):
        kind = (bool(item.get("ecg")), bool(item.get("image")))
        if kind in seen:
            continue
        try:
            f = processor.sample(item, recipe.data.image_folder, recipe.data.ecg_folder)
        except DataError:
            continue  # e.g. an ECG sample for a model without an ECG encoder
        seen.add(kind)
        feats.append(f)
        kinds.append({(True, True): "ecg+image", (True, False): "ecg", (False, True): "image",
                      (False, False): "text"}[kind])
        if len(feats) == TINY_BATCH:
            break
    if not feats:
        raise DataError(f"{recipe.data.train}: no synthetic sample fits this model")
    return feats, kinds


def _component_lines(recipe: Recipe, model, tokenizer, template: str, counts: dict) -> list[str]:
    m = recipe.model
    tc = model.config.text_config

    def n(comp: str) -> str:
        return f"{counts[comp][1]:,} parameters" if comp in counts else ""

    kv = getattr(tc, "num_key_value_heads", None) or tc.num_attention_heads
    lines = [
        f"llm: {m.llm.name} ({tc.model_type}), {tc.num_hidden_layers} layers, hidden {tc.hidden_size}, "
        f"{tc.num_attention_heads} heads / {kv} kv, vocab {len(tokenizer)}, template {template}; {n('llm')}"
    ]
    if model.vision_tower is not None:
        t = model.vision_tower
        key, layers = layer_indices(t.options)
        depth = next((t.arch[k] for k in ("num_hidden_layers", "layers", "depth", "depths") if k in t.arch), None)
        depth = f"stages {depth}" if isinstance(depth, list) else f"{depth} layers" if depth else "default depth"
        named = f" {t.arch['model_name']}" if "model_name" in t.arch else ""
        where = f"layers {layers}" if key == "layers" else f"select_layer {layers[0] if layers else 'final'}"
        lines.append(
            f"vision: {m.vision.name}{named}, {depth}, {t.image_size} px, {where}, "
            f"{t.options.get('select_feature', 'patch')} -> {t.num_tokens} tokens x {t.hidden_size}; {n('vision')}"
        )
    else:
        lines.append("vision: none")
    if model.ecg_encoder is not None:
        e = model.ecg_encoder
        s = e.signal_spec
        shape = ", ".join(f"{k} {e.arch[k]}" for k in ("layers", "widths", "patch_size") if k in e.arch)
        lines.append(
            f"ecg: {m.ecg.name}{', ' + shape if shape else ''}, {s.n_leads} leads x {s.n_samples} samples "
            f"at {s.fs:g} Hz -> {e.num_tokens} tokens x {e.hidden_size}; {n('ecg')}"
        )
    else:
        lines.append("ecg: none")
    conns = []
    for modality, conn in model.connectors.items():
        spec = model.config.connectors[modality]
        enc = model.vision_tower if modality == "image" else model.ecg_encoder
        conns.append(f"{modality} {spec['name']} {enc.hidden_size}->{model.config.text_config.hidden_size}")
    lines.append(f"connectors: {', '.join(conns) or 'none'}, layout {m.layout}; {n('connectors')}")
    return lines


# ---------------------------------------------------------------------------------------------
# what a full-size recipe needs on disk
class LocalPath(NamedTuple):
    key: str
    path: str
    what: str


def missing_local_paths(recipe: Recipe) -> list[LocalPath]:
    """Local files and folders the recipe names that do not exist (weights, data, DeepSpeed JSON);
    hub repo ids are not local paths and are left out."""
    from ..hub import is_hub_ref
    from ..train.trainer import DEEPSPEED_DIR

    m, d = recipe.model, recipe.data
    wanted = [
        LocalPath("model.llm.path", m.llm.path, "a Hugging Face model folder"),
        LocalPath("model.llm.tokenizer", m.llm.tokenizer, "a tokenizer folder"),
    ]
    if m.vision is not None:
        kind = "a weight file" if m.vision.name in ("timm", "open_clip") else "a Hugging Face model folder"
        wanted.append(LocalPath("model.vision.path", m.vision.path, kind))
    if m.ecg is not None:
        wanted.append(LocalPath("model.ecg.path", m.ecg.path, "an encoder weight file"))
    for name, conn in m.connectors.items():
        wanted.append(LocalPath(f"model.connectors.{name}.path", getattr(conn, "path", None), "a weight file"))
    wanted.append(LocalPath("data.train", d.train, "a JSON data file"))
    wanted.append(LocalPath("data.eval", d.eval, "a JSON data file"))
    if m.vision is not None:
        wanted.append(LocalPath("data.image_folder", d.image_folder, "the image folder"))
    if m.ecg is not None:
        wanted.append(LocalPath("data.ecg_folder", d.ecg_folder, "the ECG record folder"))
    for s in recipe.stages:
        wanted.append(LocalPath(f"stages.{s.name}.train", s.train, "a JSON data file"))
        for key, what in (("image_folder", "the image folder"), ("ecg_folder", "the ECG record folder")):
            wanted.append(LocalPath(f"stages.{s.name}.{key}", getattr(s, key, None), what))
    ds = recipe.training.deepspeed
    if ds and not (DEEPSPEED_DIR / f"{ds}.json").is_file():
        wanted.append(LocalPath("training.deepspeed", ds, "a DeepSpeed JSON file"))
    seen, out = set(), []
    for item in wanted:
        if item.key.startswith("model.") and is_hub_ref(item.path):
            continue  # a hub repo: resolved through the cache (hub_status says whether it is there)
        if item.path and not Path(item.path).exists() and (item.key, item.path) not in seen:
            seen.add((item.key, item.path))
            out.append(item)
    return out


__all__ = ["shrink", "tiny_check", "synthetic_data", "gem_layout_items", "missing_local_paths", "LocalPath"]
