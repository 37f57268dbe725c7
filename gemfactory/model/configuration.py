"""GemConfig: the whole multimodal model in one HF config (saved as config.json)."""
from __future__ import annotations

from transformers import AutoConfig
from transformers.configuration_utils import PreTrainedConfig, SubConfigSpec


class GemConfig(PreTrainedConfig):
    """Component names and full architectures, so a checkpoint rebuilds with no hub access.

    ``vision``: ``{"name", "arch", "options"}``; ``ecg``: ``{"name", "arch", "signal"}`` where
    ``signal`` is the encoder's SignalSpec; ``connectors``: ``{"image"|"ecg": {"name", "options"}}``.
    """

    model_type = "gem"
    sub_configs_defaults = {"text_config": SubConfigSpec(config_class=AutoConfig, model_type="llama")}

    text_config: dict | PreTrainedConfig | None = None
    llm_family: str = "vicuna"
    vision: dict | None = None
    ecg: dict | None = None
    connectors: dict | None = None
    template: str = "vicuna_v1"
    layout: str = "separate"
    image_token_id: int | None = None
    ecg_token_id: int | None = None
    tie_word_embeddings: bool = False

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        self.connectors = dict(self.connectors or {})
        if self.text_config.tie_word_embeddings:
            self.tie_word_embeddings = True

    @property
    def signal_spec(self):
        from ..ecg.spec import SignalSpec

        return SignalSpec.from_dict(self.ecg["signal"]) if self.ecg else None
