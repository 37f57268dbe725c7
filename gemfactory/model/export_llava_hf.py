"""``gemfactory export --format llava-hf``: an image-only checkpoint as transformers' LLaVA folder.

``LlavaForConditionalGeneration`` (what HF pipelines, vLLM and SGLang serve as ``llava``) has one
vision tower, a two-layer GELU projector and a decoder LLM; so only those combinations export:
Llama-family (vicuna, llama3, tinyllama) or Qwen2 LLMs, CLIP or SigLIP towers without any-resolution
tiling, and the ``mlp2x_gelu`` connector. Feature selection maps exactly: ``select_layer`` / ``layers``
-> ``vision_feature_layer``; CLIP ``patch`` (drop CLS) -> ``default``, ``cls_patch`` -> ``full``;
SigLIP ``patch`` -> ``full``, ``drop_first_patch`` -> ``default``. ECG models are refused: LLaVA's
classes have no ECG encoder, no second placeholder and no GEM layout, so they keep gemfactory's format.
"""
from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

from ..errors import ConfigError
from .checkpoint import publish, resolve_model_dir

LLM_FAMILIES = ("vicuna", "llama3", "tinyllama", "qwen2")
RULES = (  # gemfactory name -> transformers 5 LlavaForConditionalGeneration name
    (r"^language_model\.model\.", "model.language_model."),
    (r"^language_model\.lm_head\.", "lm_head."),
    (r"^vision_tower\.model\.", "model.vision_tower."),
    (r"^connectors\.image\.0\.", "model.multi_modal_projector.linear_1."),
    (r"^connectors\.image\.2\.", "model.multi_modal_projector.linear_2."),
)
STRATEGY = {("clip", "patch"): ("default", 1), ("clip", "cls_patch"): ("full", 1),
            ("siglip", "patch"): ("full", 0), ("siglip", "drop_first_patch"): ("default", 0)}


def refuse_unless_exportable(config) -> None:
    why = None
    if config.ecg:
        why = (f"it has an ECG encoder ({config.ecg['name']}); transformers' LLaVA has no ECG tower or <ecg> "
               "placeholder, so ECG models keep gemfactory's format")
    elif not config.vision:
        why = "it has no vision tower"
    elif config.llm_family not in LLM_FAMILIES:
        why = f"LLM family {config.llm_family!r} is not one of {', '.join(LLM_FAMILIES)}"
    elif config.vision["name"] not in ("clip", "siglip"):
        why = f"vision tower {config.vision['name']!r} is not clip or siglip"
    elif config.vision["options"].get("anyres_grid"):
        why = "any-resolution tiling (vision.options.anyres_grid) is LLaVA-NeXT's layout, not LLaVA's"
    elif config.connectors.get("image", {}).get("name") != "mlp2x_gelu":
        why = f"connector {config.connectors.get('image', {}).get('name')!r} is not mlp2x_gelu (LLaVA's projector)"
    if why:
        raise ConfigError(f"export --format llava-hf: cannot export this checkpoint: {why}")


def llava_config(config, num_tokens: int):
    from transformers import AutoConfig, LlavaConfig

    options = config.vision["options"]
    strategy, _ = STRATEGY[(config.vision["name"], options["select_feature"])]
    hf_type = {"clip": "clip_vision_model", "siglip": "siglip_vision_model"}[config.vision["name"]]
    vision = AutoConfig.for_model(hf_type, **config.vision["arch"])
    layers = options.get("layers")
    return LlavaConfig(
        text_config=config.text_config.to_dict(), vision_config=vision.to_dict(),
        image_token_index=config.image_token_id, image_seq_length=num_tokens,
        vision_feature_layer=list(layers) if layers else options["select_layer"],
        vision_feature_select_strategy=strategy, projector_hidden_act="gelu", multimodal_projector_bias=True,
        tie_word_embeddings=bool(config.tie_word_embeddings),
    )


def hf_state(model) -> dict:
    compiled = [(re.compile(p), t) for p, t in RULES]
    out = {}
    for key, value in model.state_dict().items():
        for regex, target in compiled:
            if regex.match(key):
                out[regex.sub(target, key, count=1)] = value
                break
        else:
            raise ConfigError(f"export --format llava-hf: weight {key!r} has no place in LLaVA's layout")
    return out


def image_processor(vision):
    """LLaVA's image processor doing what gemfactory's preprocessing does: pad to a square with the mean
    colour then resize (``pad``), resize the shortest side then centre-crop (``crop``), or one resize to
    the square (``resize``)."""
    from transformers import LlavaImageProcessor

    size = vision.image_size
    options = vision.options
    aspect = options.get("image_aspect", "pad")
    return LlavaImageProcessor(
        do_pad=aspect == "pad", do_center_crop=aspect == "crop",
        size={"shortest_edge": size} if aspect == "crop" else {"height": size, "width": size},
        crop_size={"height": size, "width": size}, resample=3,
        image_mean=list(options["image_mean"]), image_std=list(options["image_std"]),
    )


_CONTENT = ("{%- macro content(c) -%}{%- if c is string -%}{{ c }}{%- else -%}{%- for p in c -%}"
            "{%- if p['type'] == 'image' -%}{{ '<image>' + '\\n' }}{%- elif p['type'] == 'text' -%}{{ p['text'] }}"
            "{%- endif -%}{%- endfor -%}{%- endif -%}{%- endmacro -%}")
_SYSTEM = ("{%- if messages[0]['role'] == 'system' -%}{%- set system = content(messages[0]['content']) -%}"
           "{%- set turns = messages[1:] -%}{%- else -%}{%- set system = DEFAULT -%}{%- set turns = messages -%}"
           "{%- endif -%}")
_VICUNA = ("{{ system + ' ' }}{%- for m in turns -%}{%- if m['role'] == 'user' -%}"
           "{{ 'USER: ' + content(m['content']) + ' ASSISTANT:' }}{%- else -%}"
           "{{ ' ' + content(m['content']) + eos_token }}{%- endif -%}{%- endfor -%}")
_CHATML = ("{{ '<|im_start|>system' + '\\n' + system + '<|im_end|>' + '\\n' }}{%- for m in turns -%}"
           "{{ '<|im_start|>' + m['role'] + '\\n' + content(m['content']) + '<|im_end|>' + '\\n' }}{%- endfor -%}"
           "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant' + '\\n' }}{%- endif -%}")
CHAT_LAYOUTS = {"vicuna_v1": _VICUNA, "llava_v1": _VICUNA, "chatml": _CHATML}


def chat_template(name: str) -> str | None:
    """A Jinja chat template writing the prompt gemfactory's template ``name`` writes for generation
    (without BOS: the tokenizer adds it when it has one), with image parts as ``<image>\\n``; None for
    templates without one here."""
    from ..registry import TEMPLATES

    layout = CHAT_LAYOUTS.get(name)
    if layout is None:
        return None
    system = TEMPLATES.get(name).system
    default = "{%- set DEFAULT = " + json.dumps(system) + " -%}"
    return default + _CONTENT + _SYSTEM + layout


def export_llava_hf(checkpoint, out) -> tuple[Path, str]:
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlavaForConditionalGeneration, LlavaProcessor

    src = resolve_model_dir(checkpoint)
    model = AutoModelForCausalLM.from_pretrained(src)
    refuse_unless_exportable(model.config)
    tokenizer = AutoTokenizer.from_pretrained(src)
    num_tokens = model.modality_tokens()["image"]
    hf = LlavaForConditionalGeneration(llava_config(model.config, num_tokens))
    missing, unexpected = hf.load_state_dict(hf_state(model), strict=False)
    missing = [k for k in missing if not (k == "lm_head.weight" and hf.config.tie_word_embeddings)]
    if missing or unexpected:
        raise ConfigError(f"export --format llava-hf: layouts differ (missing {missing[:3]}, unexpected {unexpected[:3]})")
    hf.to(next(model.parameters()).dtype)
    strategy, extra = STRATEGY[(model.config.vision["name"], model.config.vision["options"]["select_feature"])]
    processor = LlavaProcessor(image_processor=image_processor(model.vision_tower), tokenizer=tokenizer,
                               patch_size=model.vision_tower.model.config.patch_size,
                               vision_feature_select_strategy=strategy, num_additional_image_tokens=extra,
                               image_token="<image>",
                               chat_template=chat_template(model.config.template) or getattr(tokenizer, "chat_template", None))
    out = Path(out)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        hf.save_pretrained(tmp)
        processor.save_pretrained(tmp)
        publish(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out, f"llava-hf: LlavaForConditionalGeneration, {num_tokens} image tokens per <image>"
