"""Recipe -> GemForCausalLM + tokenizer, through the registries."""
from __future__ import annotations

import inspect
from typing import Iterable

import torch

from .. import hub
from ..config import ModelConfig
from ..errors import CheckpointError, ConfigError
from ..registry import CONNECTORS, ECG_ENCODERS, LLMS, TEMPLATES, VISION_TOWERS
from ..template.base import ECG_TOKEN, IMAGE_TOKEN
from ..weights import load_state_file
from .configuration import GemConfig
from .modeling import GemForCausalLM
from .sources import local_model_config, planning_model_config

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def recipe_template(recipe):
    """The recipe's chat template (or its LLM family's default), instantiated."""
    name = recipe.model.template or LLMS.get(recipe.model.llm.name).default_template
    return TEMPLATES.get(name)()


def build_tokenizer(cfg: ModelConfig, texts: Iterable[str] | None = None, origin: str | None = None):
    family = LLMS.get(cfg.llm.name)()
    source = cfg.llm.tokenizer or cfg.llm.path
    if source:
        key = "model.llm.tokenizer" if cfg.llm.tokenizer else "model.llm.path"
        tok = family.load_tokenizer(hub.resolve(source, key, "tokenizer", origin))
    else:
        if texts is None:
            raise ConfigError(
                "model.llm.tokenizer: a tiny model without a tokenizer folder trains one on the "
                "training data, so data.train must be set"
            )
        tok = family.train_tokenizer(texts, cfg.llm.tokenizer_vocab_size)
    tok.add_special_tokens({"additional_special_tokens": [IMAGE_TOKEN, ECG_TOKEN]},
                           replace_extra_special_tokens=False)
    tok.padding_side = "right"
    return tok


def build_config(cfg: ModelConfig, tokenizer, planning: bool = False, origin: str | None = None) -> GemConfig:
    """The GemConfig of ``cfg``. Hub references are resolved: with weights, or with ``planning``
    configs only (shipped ones standing in for repositories that are not cached)."""
    cfg = planning_model_config(cfg, origin) if planning else local_model_config(cfg, origin)
    family = LLMS.get(cfg.llm.name)()
    text_config = family.make_config(cfg.llm.arch, len(tokenizer), cfg.llm.path)
    if not cfg.llm.path:  # a tiny build: the trained tokenizer's ids, not the model type's defaults
        text_config.bos_token_id = tokenizer.bos_token_id
        text_config.eos_token_id = tokenizer.eos_token_id
        if tokenizer.pad_token_id != tokenizer.eos_token_id:  # a shared pad row would freeze EOS
            text_config.pad_token_id = tokenizer.pad_token_id
    template = cfg.template or family.default_template
    TEMPLATES.get(template)  # fail early on unknown names
    vision = ecg = None
    connectors = {}
    if cfg.vision is not None:
        tower_cls = VISION_TOWERS.get(cfg.vision.name)
        arch, options = tower_cls.resolve(cfg.vision.arch, cfg.vision.options, cfg.vision.path)
        vision = {"name": cfg.vision.name, "arch": arch, "options": options}
    if cfg.ecg is not None:
        enc_cls = ECG_ENCODERS.get(cfg.ecg.name)
        # encoders that read their architecture from a folder (ecg_image) take model.ecg.path
        takes_path = "path" in inspect.signature(enc_cls.resolve).parameters
        arch, spec = enc_cls.resolve(cfg.ecg.arch, cfg.ecg.signal, **({"path": cfg.ecg.path} if takes_path else {}))
        ecg = {"name": cfg.ecg.name, "arch": arch, "signal": spec.to_dict()}
    for modality, conn in cfg.connectors.items():
        CONNECTORS.get(conn.name)
        connectors[modality] = {"name": conn.name, "options": dict(conn.options), "via": conn.via}
    return GemConfig(
        text_config=text_config,
        llm_family=cfg.llm.name,
        vision=vision,
        ecg=ecg,
        connectors=connectors,
        template=template,
        layout=cfg.layout,
        image_token_id=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
        ecg_token_id=tokenizer.convert_tokens_to_ids(ECG_TOKEN),
        # given to GemConfig itself: its init resets the attention implementation of text_config
        attn_implementation=attention_kernel(cfg.llm.attn_implementation, cfg.llm.dtype),
    )


def attention_kernel(asked: str | None, dtype: str) -> str:
    """``model.llm.attn_implementation``; unset or ``auto``: flash-attention 2 where it can run
    (the flash_attn package, a CUDA GPU, half precision weights), else PyTorch SDPA."""
    if asked not in (None, "auto"):
        return asked
    import importlib.util

    import torch

    if (dtype in ("bfloat16", "float16") and torch.cuda.is_available()
            and importlib.util.find_spec("flash_attn") is not None):
        return "flash_attention_2"
    return "sdpa"


def build_model(cfg: ModelConfig, tokenizer, origin: str | None = None) -> GemForCausalLM:
    from transformers.integrations import is_deepspeed_zero3_enabled

    cfg = local_model_config(cfg, origin)  # hub references -> cached folders / files (weights)
    config = build_config(cfg, tokenizer)
    language_model = None
    if cfg.llm.path:
        from transformers import AutoModelForCausalLM

        language_model = AutoModelForCausalLM.from_pretrained(
            cfg.llm.path, config=config.text_config, dtype=DTYPES[cfg.llm.dtype]
        )
    if language_model is None and is_deepspeed_zero3_enabled():  # created and initialised partitioned
        model = GemForCausalLM._from_config(config)
    else:
        model = GemForCausalLM(config, language_model=language_model)
    if language_model is not None and language_model.get_input_embeddings().num_embeddings < len(tokenizer):
        model.language_model.resize_token_embeddings(len(tokenizer))
    if cfg.vision is not None and cfg.vision.path:
        model.vision_tower.load_pretrained(cfg.vision.path)
    if cfg.ecg is not None and cfg.ecg.path:
        model.ecg_encoder.load_pretrained(cfg.ecg.path)
    for modality, conn in cfg.connectors.items():
        if conn.path:
            load_connector(model.connectors[modality], conn.path, f"model.connectors.{modality}.path")
    return model.to(DTYPES[cfg.llm.dtype])


def load_connector(module, path: str, key: str) -> None:
    """Trained connector weights: a state dict of the connector alone, or a LLaVA projector file
    (``model.mm_projector.0.weight`` ...: everything up to ``mm_projector.`` is dropped)."""
    state = {k.split("mm_projector.", 1)[-1]: v for k, v in load_state_file(path, key=key).items()}
    try:
        missing, unexpected = module.load_state_dict(state, strict=False)
    except RuntimeError as exc:
        raise CheckpointError(f"{key}: {path} does not fit the connector: {str(exc).splitlines()[-1].strip()}") from None
    if missing or unexpected:
        raise CheckpointError(
            f"{key}: {path} does not fit the connector (missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
