"""``gemfactory template check RECIPE``: the recipe's first samples rendered with its template and
tokenizer, supervised spans marked; fails when any sample's supervision is not its assistant replies."""
from __future__ import annotations

from ..config import load_recipe
from ..errors import DataError
from ..model.builder import recipe_template
from .recipe_tokenizer import tokenizer_for_recipe
from ..template.base import normalize_conversation
from ..template.check import check_sample
from .dataset import load_items


def check_recipe_template(recipe_path: str, overrides, n: int) -> int:
    recipe = load_recipe(recipe_path, overrides)
    template = recipe_template(recipe)
    tokenizer = tokenizer_for_recipe(recipe, template)
    items = load_items(recipe.stages[0].train or recipe.data.train)[:n]
    failures = 0
    for item in items:
        item_id = item.get("id", "?")
        try:
            turns = normalize_conversation(item.get("conversations", item.get("conversation")), item_id)
            print(f"--- {item_id} ({template.name})\n{check_sample(template, turns, tokenizer)}\n")
        except DataError as exc:
            failures += 1
            print(f"--- {item_id}: FAILED: {exc}\n")
    if failures:
        raise DataError(f"template {template.name}: {failures} of {len(items)} samples failed the check")
    return 0
