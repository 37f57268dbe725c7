"""``gemfactory import``: a seed's released checkpoint folder -> a gemfactory checkpoint.

The format builds the GemConfig; the seed's weights are renamed through the format's table and
must cover the model exactly: the first key no rule maps (or that maps to no gemfactory weight)
and the first gemfactory weight nothing maps to are named in one error line. Vocabularies grow
by the placeholder tokens gemfactory needs (``<image>``, ``<ecg>``) where the seed's tokenizer
lacks them; their new embedding and output rows are the mean of the existing rows (as
transformers' LLaVA conversion pads its vocabulary) and every other logit stays as it was.
"""
from __future__ import annotations

import logging
from pathlib import Path

from ..errors import CheckpointError
from . import FORMATS
from .base import FormatError, ImportPlan, read_json

log = logging.getLogger(__name__)


def local_source(src: str, key: str = "SRC") -> Path:
    """A local folder, or a hub repository id resolved through gemfactory.hub (cache, offline rules)."""
    path = Path(src)
    if path.is_dir():
        return path
    from ..hub import HubMissing, cache_dir, is_hub_ref, parse_ref, resolve

    if is_hub_ref(src):
        try:
            return Path(resolve(src, key, need="weights"))
        except HubMissing:  # the resolver's hint names `gemfactory download RECIPE`; an import has no recipe
            ref = parse_ref(src)
            raise HubMissing(f"{key}: Hugging Face repo {ref.repo_id} (revision {ref.rev}) is not in the cache "
                             f"{cache_dir()} while HF_HUB_OFFLINE is set; fetch it with: hf download {ref.repo_id}"
                             f"{' --revision ' + ref.revision if ref.revision else ''} (or run the import with "
                             "HF_HUB_OFFLINE=0)") from None
    raise CheckpointError(f"{key}: {src!r} is neither a local folder nor a hub repository id (org/name)")


def detect_format(src: Path, config: dict) -> list[str]:
    """Names of every registered format that recognises ``src``."""
    return [name for name in FORMATS.names() if FORMATS.get(name)().detect(src, config)]


def import_checkpoint(fmt_name: str, src: str, out: str, vision_tower: str | None = None,
                      ecg_tower: str | None = None) -> tuple[Path, str]:
    """Write ``out``; return it and a line describing the imported model."""
    from ..model.checkpoint import save_checkpoint

    folder = local_source(src)
    config = read_json(folder / "config.json", "the checkpoint's config")
    fmt = FORMATS.get(fmt_name)()
    if not fmt.detect(folder, config):
        others = [n for n in detect_format(folder, config) if n != fmt_name]
        seen = config.get("architectures") or config.get("model_type") or "unknown"
        hint = f"; it looks like --from {others[0]}" if others else ""
        raise FormatError(f"{folder}: not a {fmt_name} checkpoint (config.json: {seen}){hint}")
    state = fmt.read_weights(folder)
    plan = fmt.plan(folder, config, {"vision_tower": vision_tower, "ecg_tower": ecg_tower, "state_keys": set(state)})
    mapped, origin, unmatched = fmt.map_keys(state)
    model = build_model(plan)
    external = load_external(model, plan)
    check_keys(model, mapped, origin, unmatched, skip=tuple(external), src=folder, fmt=fmt_name)
    dtype = next(iter(mapped.values())).dtype
    model.load_state_dict(mapped, strict=False)
    tokenizer = finish_vocab(model, plan, folder)
    model.to(dtype)
    save_checkpoint(model, tokenizer, out)
    parts = [plan.llm_family, plan.vision and plan.vision["name"], plan.ecg and plan.ecg["name"]]
    return Path(out), f"{fmt_name} -> {' + '.join(p for p in parts if p)}, template {plan.template}"


def build_model(plan: ImportPlan):
    from ..model.configuration import GemConfig
    from ..model.modeling import GemForCausalLM
    from ..registry import ECG_ENCODERS, VISION_TOWERS

    vision = ecg = None
    if plan.vision:
        arch, options = VISION_TOWERS.get(plan.vision["name"]).resolve(plan.vision["arch"], plan.vision["options"], None)
        vision = {"name": plan.vision["name"], "arch": arch, "options": options}
    if plan.ecg:
        arch, spec = ECG_ENCODERS.get(plan.ecg["name"]).resolve(plan.ecg["arch"], plan.ecg["signal"])
        ecg = {"name": plan.ecg["name"], "arch": arch, "signal": spec.to_dict()}
    config = GemConfig(text_config=plan.text_config.to_dict(), llm_family=plan.llm_family, vision=vision, ecg=ecg,
                       connectors={k: {"via": None, **v} for k, v in plan.connectors.items()},
                       template=plan.template, layout=plan.layout, attn_implementation="sdpa")
    return GemForCausalLM(config)


def load_external(model, plan: ImportPlan) -> dict[str, str]:
    """Towers the seed keeps apart from its weights (LLaVA loads CLIP from ``mm_vision_tower``):
    loaded through the component's own reader; returns {state prefix: path}."""
    done = {}
    for prefix, path in plan.external.items():
        module = model.vision_tower if prefix.startswith("vision_tower") else model.ecg_encoder
        module.load_pretrained(path)
        done[prefix] = path
    return done


def expected_keys(model) -> list[str]:
    """The model's weights, each tied alias (an output head sharing the embedding) listed once."""
    seen, keys = set(), []
    for key, tensor in model.state_dict(keep_vars=True).items():
        ident = (tensor.data_ptr(), tuple(tensor.shape))
        if ident in seen:
            continue
        seen.add(ident)
        keys.append(key)
    return keys


def check_keys(model, mapped: dict, origin: dict, unmatched: list[str], skip: tuple, src: Path, fmt: str) -> None:
    own = model.state_dict()
    unexpected = list(unmatched) + [origin[k] for k in mapped if k not in own]
    missing = [k for k in expected_keys(model) if k not in mapped and not k.startswith(skip)]
    if unexpected or missing:
        first_u = repr(unexpected[0]) if unexpected else "none"
        first_m = repr(missing[0]) if missing else "none"
        raise FormatError(f"{src}: the weights do not fit the {fmt} layout: {len(unexpected)} unexpected "
                          f"(first {first_u}), {len(missing)} missing (first {first_m})")
    for key, value in mapped.items():
        if tuple(value.shape) != tuple(own[key].shape):
            raise FormatError(f"{src}: {origin[key]!r} has shape {tuple(value.shape)}, the config makes "
                              f"{key!r} {tuple(own[key].shape)}")


def finish_vocab(model, plan: ImportPlan, src: Path):
    """The seed's tokenizer with gemfactory's placeholders; embeddings grown to fit, new rows = mean."""
    import torch

    from ..registry import LLMS
    from ..template.base import ECG_TOKEN, IMAGE_TOKEN

    tokenizer = LLMS.get(plan.llm_family)().load_tokenizer(str(src))
    tokenizer.add_special_tokens({"additional_special_tokens": [IMAGE_TOKEN, ECG_TOKEN]},
                                 replace_extra_special_tokens=False)
    tokenizer.padding_side = "right"
    if plan.image_token_id is not None and tokenizer.convert_tokens_to_ids(IMAGE_TOKEN) != plan.image_token_id:
        raise FormatError(f"{src}: config.json names image token id {plan.image_token_id}, but the tokenizer "
                          f"maps {IMAGE_TOKEN!r} to {tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)}")
    lm = model.language_model
    old = lm.get_input_embeddings().num_embeddings
    if len(tokenizer) > old:
        lm.resize_token_embeddings(len(tokenizer), mean_resizing=False)
        with torch.no_grad():
            for layer in {id(m): m for m in (lm.get_input_embeddings(), lm.get_output_embeddings())}.values():
                layer.weight[old:] = layer.weight[:old].mean(dim=0)
                if getattr(layer, "bias", None) is not None:
                    layer.bias[old:] = layer.bias[:old].mean()
    model.config.text_config.vocab_size = lm.get_input_embeddings().num_embeddings
    model.config.image_token_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    model.config.ecg_token_id = tokenizer.convert_tokens_to_ids(ECG_TOKEN)
    return tokenizer

