"""The tokenizer a recipe trains with: the one its LLM entry names (a folder or hub repo), else a tiny
byte-level BPE trained on the recipe's own training texts (read here, in the data layer, so the
model layer receives texts, never data files)."""
from __future__ import annotations

import dataclasses

from ..errors import ConfigError
from ..model.builder import build_tokenizer, recipe_template
from ..model.sources import VocabOnlyTokenizer, planning_tokenizer
from ..registry import TEMPLATES
from .dataset import load_items


def tokenizer_texts(recipe, template) -> list[str]:
    """Texts a tiny tokenizer is trained on: the first stage's data plus the marker words of the
    recipe's template and of every stage's own template."""
    train = recipe.stages[0].train or recipe.data.train
    if not train:
        raise ConfigError(f"{recipe.source}: data.train: no training data given")
    texts = []
    for item in load_items(train):
        for turn in item.get("conversations", item.get("conversation", [])):
            if isinstance(turn, dict) and isinstance(turn.get("value"), str):
                texts.append(turn["value"])
        context = item.get("context")
        if isinstance(context, dict):  # LLaVA-Graph caption / OCR lines are prompt text too
            texts.extend(f"{k.capitalize()}: {v}" for k, v in context.items() if isinstance(v, str))
    stage_templates = [TEMPLATES.get(stage.template)() for stage in recipe.stages if stage.template]
    texts.extend(t.marker_text() for t in [template, *stage_templates])
    return texts


def tokenizer_for_recipe(recipe, template=None, planning: bool = False):
    """The tokenizer the recipe names (a folder or hub repo), else a tiny BPE trained on its data.

    ``planning``: a tokenizer that is not cached becomes a ``VocabOnlyTokenizer`` (a warning says so)."""
    template = template or recipe_template(recipe)
    cfg = recipe.model
    if planning:
        found = planning_tokenizer(cfg, recipe.source)
        if isinstance(found, VocabOnlyTokenizer):
            return found
        if found is not None:
            cfg = dataclasses.replace(cfg, llm=dataclasses.replace(cfg.llm, tokenizer=found))
    local = cfg.llm.tokenizer or cfg.llm.path
    return build_tokenizer(cfg, None if local else tokenizer_texts(recipe, template), recipe.source)
