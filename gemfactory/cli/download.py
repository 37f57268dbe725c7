"""``gemfactory download RECIPE``: fetch the Hugging Face repositories a recipe names into the hub cache."""
from __future__ import annotations

import sys

from .common import add_recipe_args


def register(sub) -> None:
    s = sub.add_parser("download", help="fetch every Hugging Face repo a recipe names into the hub cache "
                                        "(HF_HOME / HF_HUB_CACHE), with progress")
    add_recipe_args(s, "model.llm.path=org/name@rev")
    s.add_argument("--config-only", action="store_true",
                   help="only config, tokenizer and preprocessor files: enough for memory, train --dry-run "
                        "and recipe check")
    s.set_defaults(func=cmd_download)


def cmd_download(args) -> int:
    from ..config import load_recipe
    from ..errors import GemError
    from ..hub import fetch, is_hub_ref, offline
    from ..model.sources import hub_refs

    recipe = load_recipe(args.recipe, args.overrides)
    wanted = {key: (value, args.config_only) for key, value in hub_refs(recipe.model).items()}
    if is_hub_ref(recipe.model.llm.config):  # the architecture of a folder made later: its config only
        wanted["model.llm.config"] = (recipe.model.llm.config, True)
    if not wanted:
        print(f"{args.recipe}: names no Hugging Face repositories (every model path is local)")
        return 0
    if offline():
        raise GemError("HF_HUB_OFFLINE is set to 1: downloading needs the hub; unset it (or set "
                       "HF_HUB_OFFLINE=0) and run gemfactory download again")
    failed = 0
    for key, (value, config_only) in wanted.items():
        try:
            path = fetch(value, key, config_only)
        except GemError as exc:
            print(f"error: {exc}", file=sys.stderr)
            failed += 1
            continue
        print(f"{key}: {value} -> {path}")
    if failed:
        print(f"error: {args.recipe}: {failed} of {len(wanted)} repositories could not be downloaded "
              "(a local folder not made yet reads as a repo id too)", file=sys.stderr)
        return 2
    return 0
