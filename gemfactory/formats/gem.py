"""GEM (lanxiang1017/GEM): LLaVA's layout plus the ECG-CoCa tower and the ECG projector.

On top of LLaVA's fields config.json holds ``mm_ecg_tower`` (the ECG-CoCa checkpoint the tower is
read from when its weights are not saved), ``open_clip_config`` (the open_clip model name; its
``ecg_cfg`` is read from ``open_clip_config.json`` in the folder when present, else from the table
below) and ``ecg_projector_type``. Weights: ``model.ecg_tower.ecg_tower.`` (open_clip's ECG
transformer: ``conv1``, ``class_embedding``, ``positional_embedding``, ``ln_pre``,
``transformer.resblocks.N``, ``ln_post``, ...) and ``model.ecg_projector.`` (``nn.Linear(768,
mm_hidden_size)`` or an mlp). GEM's forward (``encode_ecgs``) takes the tower's last block output
with ``output_last_transformer_layer=True`` (before ``ln_post``, CLS + patches: vit1d ``output:
pre_ln_post``), then ``ecg_projector``, then ``mm_projector`` (gemfactory's ``via: image``), and puts
the ECG tokens before the image tokens at ``<image>`` (layout ``gem``).
"""
from __future__ import annotations

from pathlib import Path

from . import FORMATS
from .base import ImportPlan, projector_entry, read_json, refuse
from .llava import LlavaFormat

#: ``ecg_cfg`` of the open_clip configs GEM ships (ecg_coca/open_clip/model_configs/*.json at
#: lanxiang1017/GEM HEAD): width, layers, patch_size, seq_length, lead_num; heads = width / 64
#: (open_clip's default head_width), mlp_ratio 4 (open_clip's default)
OPEN_CLIP_ECG = {"coca_ViT-B-32": {"width": 768, "layers": 12, "patch_size": 50, "seq_length": 5000, "lead_num": 12}}
GEM_FS = 500.0  # GEM's ECGs: 10 s at 500 Hz (5000 samples)


@FORMATS.register("gem")
class GemFormat(LlavaFormat):
    summary = "GEM (LLaVA layout + ECG-CoCa tower + ecg_projector)"
    rules = (
        (r"^model\.ecg_tower\.ecg_tower\.transformer\.resblocks\.", "ecg_encoder.blocks."),
        # open_clip's pooling heads and output projection: GEM's tokens leave the tower before them
        (r"^model\.ecg_tower\.ecg_tower\.(attn_pool|attn_pool_contrastive|proj$)", None),
        (r"^model\.ecg_tower\.ecg_tower\.", "ecg_encoder."),
        (r"^model\.ecg_projector\.", "connectors.ecg.first."),
        *LlavaFormat.rules,
    )

    def detect(self, src: Path, config: dict) -> bool:
        return "mm_ecg_tower" in config and "mm_vision_tower" in config

    def plan(self, src: Path, config: dict, options: dict) -> ImportPlan:
        plan = super().plan(src, config, options)
        plan.ecg = {"name": "vit1d", "arch": ecg_arch(src, config), "signal": {"fs": GEM_FS}}
        plan.ecg["signal"]["n_samples"] = plan.ecg["arch"].pop("_n_samples")
        plan.connectors["ecg"] = {**projector_entry(config.get("ecg_projector_type", "linear"), "ecg_projector_type"),
                                  "via": "image"}
        plan.layout = "gem"
        if not any(k.startswith("model.ecg_tower.") for k in options.get("state_keys", ())):
            tower = options.get("ecg_tower") or config.get("mm_ecg_tower")
            from .importer import local_source

            path = Path(tower) if tower and Path(tower).is_file() else local_source(str(tower), "mm_ecg_tower (or --ecg-tower)")
            plan.external["ecg_encoder."] = str(path)
        return plan


def ecg_arch(src: Path, config: dict) -> dict:
    name = config.get("open_clip_config")
    side = src / "open_clip_config.json"
    if side.is_file():
        cfg = read_json(side, "the open_clip model config").get("ecg_cfg", {})
    elif name in OPEN_CLIP_ECG:
        cfg = OPEN_CLIP_ECG[name]
    else:
        refuse("open_clip_config", name, f"unknown ECG-CoCa config; put its open_clip JSON beside config.json "
               f"as open_clip_config.json (known: {sorted(OPEN_CLIP_ECG)})")
    if cfg.get("lead_num", 12) != 12:
        refuse("open_clip_config.ecg_cfg.lead_num", cfg["lead_num"], "GEM's ECG input has 12 leads")
    width = cfg.get("width", 768)
    return {"width": width, "layers": cfg.get("layers", 12), "heads": width // cfg.get("head_width", 64),
            "patch_size": cfg.get("patch_size", 50), "mlp_ratio": cfg.get("mlp_ratio", 4.0),
            "output_tokens": "cls_patch", "output": "pre_ln_post", "_n_samples": cfg.get("seq_length", 5000)}
