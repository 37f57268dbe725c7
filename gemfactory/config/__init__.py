"""Recipe YAML -> validated, typed dataclasses.

A recipe has four sections: ``model`` (:mod:`.model`), ``data`` (:mod:`.data`), ``stages`` (a list,
each with a unique ``name``; :mod:`.stage`) and ``training`` (:mod:`.recipe`). ``base: other.yaml``
(relative to the recipe) is merged underneath; command-line overrides use dotted paths
(``training.seed=1``, ``stages.finetune.epochs=2``). Every field carries its help text beside its
default; unknown keys, wrong types and bad values are one-line errors naming the file and the key
path (:mod:`.loading`, :mod:`.typecheck`).
"""
from .augment import AugmentConfig
from .data import DataConfig
from .fields import field_help
from .loading import apply_override, deep_merge, load_recipe, recipe_from_dict
from .model import ConnectorConfig, ECGConfig, LLMConfig, ModelConfig, VisionConfig
from .recipe import Recipe, TrainingConfig
from .stage import COMPONENTS, LoraConfig, PartialConfig, StageConfig, TuneConfig

__all__ = [
    "AugmentConfig", "COMPONENTS", "ConnectorConfig", "DataConfig", "ECGConfig", "LLMConfig", "LoraConfig",
    "ModelConfig", "PartialConfig", "Recipe", "StageConfig", "TrainingConfig", "TuneConfig",
    "VisionConfig", "apply_override", "deep_merge", "field_help", "load_recipe", "recipe_from_dict",
]
