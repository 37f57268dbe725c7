"""GemConfig / GemForCausalLM, registered with the Auto classes on import."""
from transformers import AutoConfig, AutoModelForCausalLM

from .configuration import GemConfig
from .modeling import GemForCausalLM

AutoConfig.register(GemConfig.model_type, GemConfig, exist_ok=True)
AutoModelForCausalLM.register(GemConfig, GemForCausalLM, exist_ok=True)

__all__ = ["GemConfig", "GemForCausalLM"]
