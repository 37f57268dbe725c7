"""``gemfactory`` commands: train, plan memory, check recipes and templates."""
from __future__ import annotations

import sys
from pathlib import Path

from .common import add_recipe_args, positive


def register(sub) -> None:
    s = sub.add_parser("train", help="train a recipe")
    add_recipe_args(s)
    s.add_argument("--dry-run", action="store_true",
                   help="build the model and print parameters, sequence lengths, memory and time estimates")
    s.add_argument("--devices", type=int, default=1, help="devices to plan memory for (--dry-run)")
    s.add_argument("--resume", action="store_true",
                   help="skip finished stages; continue the current one from its latest complete checkpoint")
    s.set_defaults(func=cmd_train)

    s = sub.add_parser("memory", help="estimate each stage's GPU memory per device (no weights loaded) and "
                                      "whether it fits --gpu-memory")
    add_recipe_args(s, "stages.finetune.batch_size=2")
    s.add_argument("--gpu-memory", type=positive(float), metavar="GIB", help="memory of one GPU in GiB, e.g. 24")
    s.add_argument("--devices", type=positive(int), default=1, help="GPUs the run is spread over (ZeRO splits states)")
    s.set_defaults(func=cmd_memory)

    s = sub.add_parser("template", help="template tools")
    tsub = s.add_subparsers(dest="template_command", required=True, metavar="TOOL")
    t = tsub.add_parser("check", help="render samples with the supervised spans marked")
    add_recipe_args(t, "data.max_length=512")
    t.add_argument("--n", type=int, default=3)
    t.set_defaults(func=cmd_template_check)

    s = sub.add_parser("recipe", help="recipe tools")
    rsub = s.add_subparsers(dest="recipe_command", required=True, metavar="TOOL")
    r = rsub.add_parser("check", help="validate a recipe and build its model config (--tiny: train its tiny twin)")
    add_recipe_args(r, "model.llm.path=org/name")
    r.add_argument("--tiny", action="store_true",
                   help="build the recipe's architecture at test size (no weights) and run one step per stage")
    r.add_argument("--data", metavar="DIR",
                   help="synthetic data folder for --tiny, made there when it has no train.json "
                        "(default: a temporary folder)")
    r.set_defaults(func=cmd_recipe_check)


def cmd_train(args) -> int:
    from ..config import load_recipe

    recipe = load_recipe(args.recipe, args.overrides)
    if args.dry_run:
        from ..train.dry_run import dry_run

        dry_run(recipe, devices=args.devices)
        return 0
    from ..train.distributed import distributed_run, is_main_process
    from ..train.trainer import train

    with distributed_run():  # leaves the process group (and its threads) before the interpreter exits
        final = train(recipe, resume=args.resume)
    if is_main_process():
        print(f"model saved to {final}")
        from ..train.examples import copy_examples

        shipped = copy_examples(recipe.data, recipe.training.output_dir)
        if shipped:  # the records `gemfactory app` offers as examples
            print(f"example records copied to {Path(recipe.training.output_dir) / 'examples'}: {', '.join(shipped)}")
    return 0


def cmd_memory(args) -> int:
    from ..config import load_recipe
    from ..train.memory import memory_report

    fits = memory_report(load_recipe(args.recipe, args.overrides), args.gpu_memory, args.devices)
    return 0 if fits else 1


def cmd_template_check(args) -> int:
    from ..data.template_check import check_recipe_template

    return check_recipe_template(args.recipe, args.overrides, args.n)


def hub_status(recipe) -> tuple[list[str], list]:
    """Hub repos the recipe names: a line for each one cached, a LocalPath for each one not."""
    from ..hub import cached_snapshot, has_config, has_tokenizer, parse_ref
    from ..model.sources import hub_refs, weights_missing
    from ..train.local_paths import LocalPath

    cached, absent, no_weights = [], [], set(weights_missing(recipe.model))
    for key, value in hub_refs(recipe.model).items():
        ref = parse_ref(value)
        snap = None if ref.filename else cached_snapshot(ref)
        if key == "model.llm.tokenizer" and snap is not None and has_tokenizer(snap) or \
                key != "model.llm.tokenizer" and key not in no_weights:
            cached.append(f"hub {key}: {value}: cached")
            continue
        state = ("a hub repo whose configs are cached, its weights not" if snap is not None and has_config(snap)
                 else "no local path, and no hub repo in the cache")
        absent.append(LocalPath(key, value, f"{state}; gemfactory download {recipe.source}"))
    return cached, absent


def cmd_recipe_check(args) -> int:
    from ..config import load_recipe
    from ..train.local_paths import missing_local_paths

    recipe = load_recipe(args.recipe, args.overrides)
    if args.tiny:
        from ..data.synth import synthetic_data
        from ..train.tiny_check import tiny_check

        with synthetic_data(args.data) as data_dir:
            lines = tiny_check(recipe, data_dir)
        print(f"{args.recipe}: tiny twin (same architecture choices, test sizes, synthetic data)")
        for line in lines:
            print(line if line == "ok" else f"  {line}")
        return 0

    missing = missing_local_paths(recipe)
    # the config needs config files (local, cached or shipped); a tokenizer trained on the data needs data.train
    needs = {"model.llm.path", "model.llm.tokenizer", "model.vision.path"}
    if not (recipe.model.llm.path or recipe.model.llm.tokenizer):
        needs |= {"data.train", f"stages.{recipe.stages[0].name}.train"}
    if recipe.model.llm.config:  # the architecture planning reads while model.llm.path is not made yet
        needs.discard("model.llm.path")
    cached, uncached = hub_status(recipe)
    for line in cached:
        print(line)
    if not any(m.key in needs for m in missing):  # planning reads configs of uncached repos from the shipped ones
        from ..model.builder import build_config
        from ..data.recipe_tokenizer import tokenizer_for_recipe

        tokenizer = tokenizer_for_recipe(recipe, planning=True)
        config = build_config(recipe.model, tokenizer, planning=True, origin=recipe.source)
        print(f"{args.recipe}: config ok (llm {config.llm_family}, template {config.template}, "
              f"vision {config.vision and config.vision['name']}, ecg {config.ecg and config.ecg['name']})")
    missing = uncached + missing
    if missing:
        for m in missing:
            print(f"missing {m.key}: {m.path} ({m.what})", file=sys.stderr)
        print(f"error: {args.recipe}: {len(missing)} path(s) missing; the architecture alone can be "
              f"checked without them: gemfactory recipe check {args.recipe} --tiny", file=sys.stderr)
        return 2
    print("ok")
    return 0
