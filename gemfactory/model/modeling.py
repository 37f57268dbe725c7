"""GemForCausalLM: towers -> connectors -> placeholder tokens of a HF causal LM.

The data layer expands each ``<image>`` / ``<ecg>`` placeholder into as many placeholder tokens
as the modality yields, so sequence lengths are known before the forward pass; here the
embeddings at those positions are replaced by the projected tower features, in order.
"""
from __future__ import annotations

import torch
from torch import nn
from transformers import AutoModelForCausalLM, PreTrainedModel
from transformers import initialization as init
from transformers.modeling_outputs import CausalLMOutputWithPast

from ..connector.base import Connector
from ..errors import ConfigError, DataError
from ..registry import CONNECTORS, ECG_ENCODERS, VISION_TOWERS
from .chunked_loss import linear_cross_entropy
from .packed_attention import varlen_kwargs_from_positions  # importing registers the sdpa_packed kernel
from .configuration import GemConfig


class GemPreTrainedModel(PreTrainedModel):
    config_class = GemConfig
    config: GemConfig
    base_model_prefix = ""
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _supports_flash_attn = True
    _skip_keys_device_placement = ["past_key_values"]

    def _init_weights(self, module):
        super()._init_weights(module)
        extra = getattr(module, "init_extra_parameters", None)
        if callable(extra):
            extra(init)


class GemForCausalLM(GemPreTrainedModel):
    def __init__(self, config: GemConfig, language_model: nn.Module | None = None):
        super().__init__(config)
        self.language_model = language_model or AutoModelForCausalLM.from_config(config.text_config)
        llm_width = config.text_config.hidden_size
        self.vision_tower = None
        self.ecg_encoder = None
        self.connectors = nn.ModuleDict()
        self.feature_caches: dict = {}  # modality -> FeatureCache while a stage keeps that tower frozen
        self.fused_loss = False  # training.fused_loss: set by the trainer for a stage (model/chunked_loss.py)
        if config.vision:
            cls = VISION_TOWERS.get(config.vision["name"])
            self.vision_tower = cls(config.vision["arch"], config.vision["options"])
            self.connectors["image"] = _connector(config, "image", self.vision_tower.hidden_size, llm_width)
            self.anyres = self.vision_tower.anyres_layout()
            if self.anyres is not None:
                if self.connectors["image"].changes_token_count:
                    raise ConfigError("model.vision.options.anyres_grid: cannot be combined with a connector "
                                      "that changes the token count (e.g. resampler)")
                self.image_newline = nn.Parameter(torch.zeros(llm_width))
        if config.ecg:
            from ..ecg.spec import SignalSpec

            cls = ECG_ENCODERS.get(config.ecg["name"])
            self.ecg_encoder = cls(config.ecg["arch"], SignalSpec.from_dict(config.ecg["signal"]))
            via = config.connectors.get("ecg", {}).get("via")
            if via == "image" and self.vision_tower is not None:  # GEM: into the image projector
                first = _connector(config, "ecg", self.ecg_encoder.hidden_size, self.vision_tower.hidden_size)
                self.connectors["ecg"] = SharedTail(first, self.connectors["image"])
            elif via is not None:
                raise ConfigError(f"model.connectors.ecg.via: {via!r} needs a vision tower and its connector")
            else:
                self.connectors["ecg"] = _connector(config, "ecg", self.ecg_encoder.hidden_size, llm_width)
        self.post_init()

    def init_extra_parameters(self, init) -> None:
        if getattr(self, "image_newline", None) is not None:
            init.normal_(self.image_newline, std=self.image_newline.shape[0] ** -0.5)

    # embeddings -------------------------------------------------------------------------------
    def get_input_embeddings(self):
        return self.language_model.get_input_embeddings()

    def set_input_embeddings(self, value):
        self.language_model.set_input_embeddings(value)

    def get_output_embeddings(self):
        return self.language_model.get_output_embeddings()

    def set_output_embeddings(self, value):
        self.language_model.set_output_embeddings(value)

    def modality_tokens(self) -> dict[str, int]:
        """Tokens each placeholder expands to."""
        out = {}
        for key, encoder in (("image", self.vision_tower), ("ecg", self.ecg_encoder)):
            if encoder is not None:  # a connector may change the count (resampler: num_queries)
                out[key] = self.connectors[key].output_tokens(encoder.num_tokens)
        return out

    def encode_images(self, pixel_values: torch.Tensor, image_sizes=None) -> torch.Tensor:
        """[views, 3, S, S] -> image tokens [n_tokens, D] in order (any-resolution views regrouped)."""
        feats = self.connectors["image"](self.tower_output("image", pixel_values))
        if getattr(self, "anyres", None) is None:
            return feats.reshape(-1, feats.shape[-1])
        if image_sizes is None:
            raise DataError("any-resolution images need image_sizes (height, width) for each image")
        sizes = image_sizes.tolist()
        per_image = feats.split([self.anyres.num_views(hw) for hw in sizes])
        return torch.cat([self.anyres.pack(f, hw, self.image_newline) for f, hw in zip(per_image, sizes)])

    def encode_ecg(self, signals: torch.Tensor) -> torch.Tensor:
        return self.connectors["ecg"](self.tower_output("ecg", signals))

    def tower_output(self, modality: str, inputs: torch.Tensor) -> torch.Tensor:
        """The image tower's / ECG encoder's tokens, through its feature cache when one is attached."""
        cache = self.feature_caches.get(modality)
        if cache is not None:
            return cache(inputs)
        return (self.vision_tower if modality == "image" else self.ecg_encoder)(inputs)

    def embed(self, input_ids, pixel_values=None, ecg=None, image_sizes=None) -> torch.Tensor:
        embeds = self.get_input_embeddings()(input_ids)
        for name, token_id, inputs, encode in (
            ("image", self.config.image_token_id, pixel_values,
             lambda px: self.encode_images(px, image_sizes)),
            ("ecg", self.config.ecg_token_id, ecg, self.encode_ecg),
        ):
            if token_id is None:
                continue
            mask = input_ids == token_id
            n_slots = int(mask.sum())
            if inputs is None or len(inputs) == 0:
                if n_slots:
                    raise DataError(f"the text has {n_slots} {name} placeholder tokens but no {name} input")
                if self.training and torch.is_grad_enabled() and name in self.connectors:  # has this tower
                    embeds = embeds + 0.0 * self._idle_output(name, embeds.device)
                continue
            feats = encode(inputs)
            feats = feats.reshape(-1, feats.shape[-1])
            if feats.shape[0] != n_slots:
                raise DataError(
                    f"{len(inputs)} {name} input(s) give {feats.shape[0]} tokens, "
                    f"but the text has {n_slots} {name} placeholder tokens"
                )
            embeds = embeds.masked_scatter(mask.unsqueeze(-1), feats.to(embeds.dtype))
        return embeds

    def _idle_output(self, modality: str, device) -> torch.Tensor:
        """A training batch without this modality still runs its tower (on a blank input) and
        its connector: under ZeRO-3 every rank must gather the same weights each step, and DDP
        expects a gradient for every trainable parameter. The caller adds 0 x this scalar."""
        if modality == "image":
            tower, size = self.vision_tower, self.vision_tower.image_size
            blank = torch.zeros(1, 3, size, size, device=device, dtype=_dtype_of(tower))
            out = self.connectors["image"](self.tower_output("image", blank)).sum()
            if getattr(self, "image_newline", None) is not None:
                out = out + self.image_newline.sum()
            return out
        spec = self.ecg_encoder.signal_spec
        blank = torch.zeros(1, len(spec.leads), spec.n_samples, device=device, dtype=_dtype_of(self.ecg_encoder))
        return self.encode_ecg(blank).sum()

    # forward / generate -----------------------------------------------------------------------
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        past_key_values=None,
        inputs_embeds: torch.FloatTensor | None = None,
        labels: torch.LongTensor | None = None,
        pixel_values: torch.FloatTensor | None = None,
        ecg: torch.FloatTensor | None = None,
        image_sizes: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        **kwargs,
    ) -> CausalLMOutputWithPast:
        if inputs_embeds is None:
            inputs_embeds = self.embed(input_ids, pixel_values, ecg, image_sizes)
        if attention_mask is None and position_ids is not None and past_key_values is None and use_cache is None:
            use_cache = False  # packed rows (data/packing.py): transformers finds sample bounds only without a cache
            if "cu_seq_lens_q" not in kwargs:  # sample bounds once per batch, for every layer's kernel
                kwargs.update(varlen_kwargs_from_positions(position_ids, inputs_embeds.shape[0]))
        if labels is not None and self.fused_loss:
            return self._fused_loss_forward(inputs_embeds, attention_mask, position_ids, labels, kwargs)
        return self.language_model(
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            position_ids=position_ids,
            past_key_values=past_key_values,
            labels=labels,
            use_cache=use_cache,
            **kwargs,
        )

    def _fused_loss_forward(self, inputs_embeds, attention_mask, position_ids, labels, kwargs):
        """training.fused_loss: the decoder's hidden states, then lm_head + cross-entropy in chunks
        (model/chunked_loss.py); no logits are returned."""
        out = self.language_model.get_decoder()(inputs_embeds=inputs_embeds, attention_mask=attention_mask,
                                                position_ids=position_ids, use_cache=False, **kwargs)
        loss = linear_cross_entropy(out.last_hidden_state, self.language_model.get_output_embeddings(), labels,
                                    kwargs.get("num_items_in_batch"))
        return CausalLMOutputWithPast(loss=loss, hidden_states=out.hidden_states, attentions=out.attentions)

    @torch.no_grad()
    def generate(self, input_ids, attention_mask=None, pixel_values=None, ecg=None, image_sizes=None, **kwargs):
        """Generate from a multimodal prompt; returns only the new tokens."""
        embeds = self.embed(input_ids, pixel_values, ecg, image_sizes)
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        return self.language_model.generate(inputs_embeds=embeds, attention_mask=attention_mask, **kwargs)


class SharedTail(Connector):
    """``first``, then a connector owned by another modality (held outside this module's
    parameters, so its weights are saved and trained once, under that modality)."""

    def __init__(self, first: Connector, shared: Connector):
        super().__init__()
        self.first = first
        self._shared = (shared,)
        self.changes_token_count = first.changes_token_count or shared.changes_token_count
        self.set_dims(first.in_dim, shared.out_dim)

    def output_tokens(self, n_in: int) -> int:
        return self._shared[0].output_tokens(self.first.output_tokens(n_in))

    def forward(self, x):
        return self._shared[0](self.first(x))


def _dtype_of(module: nn.Module) -> torch.dtype:
    return next(module.parameters(), torch.empty(0)).dtype


def _connector(config: GemConfig, modality: str, in_dim: int, out_dim: int) -> nn.Module:
    spec = config.connectors.get(modality)
    if spec is None:
        raise DataError(f"config.connectors.{modality} is missing for the {modality} encoder")
    try:
        connector = CONNECTORS.get(spec["name"])(in_dim, out_dim, **spec.get("options", {}))
    except ConfigError as exc:  # name the recipe key
        raise ConfigError(f"model.connectors.{modality}: {exc}") from None
    if not isinstance(connector, Connector):
        raise ConfigError(f"model.connectors.{modality}: connector {spec['name']!r} builds a "
                          f"{type(connector).__name__}, not a gemfactory.connector.base.Connector")
    return connector
