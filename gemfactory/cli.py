"""``gemfactory`` command line. Heavy imports happen inside each command, not at start-up."""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys

from .errors import GemError

KINDS = ("llms", "vision_towers", "ecg_encoders", "connectors", "templates", "eval_tasks")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # argparse cannot place an optional positional after options (chat CKPT --ecg R "question")
    if extra and getattr(args, "command", None) == "chat" and args.question is None \
            and not any(e.startswith("-") for e in extra):
        args.question = " ".join(extra)
    elif extra and isinstance(getattr(args, "overrides", None), list) \
            and all("=" in e and not e.startswith("-") for e in extra):
        args.overrides = [*args.overrides, *extra]  # dotted overrides written after the options
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    logging.basicConfig(level=logging.INFO if not args.quiet else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        return args.func(args) or 0
    except GemError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gemfactory", description=__doc__.splitlines()[0])
    p.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("list", help="registered components by kind")
    s.add_argument("kind", nargs="?", choices=KINDS)
    s.add_argument("--plugins", action="store_true",
                   help="only what installed plugins add (distribution and version) and plugin load errors")
    s.set_defaults(func=cmd_list)

    s = sub.add_parser("plugin", help="plugin tools")
    psub = s.add_subparsers(dest="plugin_command", required=True, metavar="TOOL")
    c = psub.add_parser("check", help="run the conformance kit on a component: tiny build, interface, gradients, "
                                      "save/load, determinism, one training step")
    c.add_argument("name", help="component name (distribution:name for a plugin that shares a built-in's name)")
    c.add_argument("--kind", choices=KINDS, help="the component's kind (default: the one kind that has NAME)")
    c.set_defaults(func=cmd_plugin_check)

    s = sub.add_parser("train", help="train a recipe")
    s.add_argument("recipe")
    s.add_argument("overrides", nargs="*", help="dotted overrides, e.g. training.seed=1")
    s.add_argument("--dry-run", action="store_true",
                   help="build the model and print parameters, sequence lengths, memory and time estimates")
    s.add_argument("--devices", type=int, default=1, help="devices to plan memory for (--dry-run)")
    s.add_argument("--resume", action="store_true",
                   help="skip finished stages; continue the current one from its latest complete checkpoint")
    s.set_defaults(func=cmd_train)

    s = sub.add_parser("memory", help="estimate each stage's GPU memory per device (no weights loaded) and "
                                      "whether it fits --gpu-memory")
    s.add_argument("recipe")
    s.add_argument("overrides", nargs="*", help="dotted overrides, e.g. stages.finetune.batch_size=2")
    s.add_argument("--gpu-memory", type=_positive(float), metavar="GIB", help="memory of one GPU in GiB, e.g. 24")
    s.add_argument("--devices", type=_positive(int), default=1, help="GPUs the run is spread over (ZeRO splits states)")
    s.set_defaults(func=cmd_memory)

    s = sub.add_parser("chat", help="ask a trained model (one shot, or interactive without a question)")
    s.add_argument("checkpoint")
    s.add_argument("question", nargs="?")
    s.add_argument("--ecg", help="WFDB record path without extension")
    s.add_argument("--image")
    s.add_argument("--bbox", action="append", metavar="X1,Y1,X2,Y2",
                   help="draw a rectangle on --image (ViP-LLaVA visual prompt; repeatable)")
    s.add_argument("--arrow", action="append", metavar="X1,Y1,X2,Y2",
                   help="draw an arrow from X1,Y1 to X2,Y2 on --image (repeatable)")
    s.add_argument("--point", action="append", metavar="X,Y", help="draw a filled dot on --image (repeatable)")
    s.add_argument("--prompt-color", default="red", help="colour of the drawn prompts: a name or #rrggbb")
    s.add_argument("--prompt-width", type=int, help="line width of the drawn prompts in pixels "
                   "(default: from the image size)")
    s.add_argument("--max-new-tokens", type=int, default=128)
    s.add_argument("--temperature", type=float, default=0.0)
    s.add_argument("--top-p", type=float, default=1.0)
    add_load_flags(s)
    s.set_defaults(func=cmd_chat)

    s = sub.add_parser("app", help="a local web app: upload an ECG record or image and chat with the model")
    s.add_argument("checkpoint")
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (default: this machine only)")
    s.add_argument("--port", type=int, help="port to listen on (default: 7860, or the next free one)")
    s.add_argument("--max-upload-mb", type=float, default=50, help="largest upload accepted, in MB")
    s.add_argument("--examples", metavar="DIR",
                   help="folder of WFDB records offered as examples (default: CKPT/examples when present)")
    s.add_argument("--share", choices=("no", "yes"), default="no",
                   help="also publish a temporary public gradio.live link (needs internet)")
    add_load_flags(s)
    s.set_defaults(func=cmd_app)

    s = sub.add_parser("eval", help="score a checkpoint on an eval task")
    s.add_argument("checkpoint")
    s.add_argument("--task", required=True)
    s.add_argument("--data", required=True)
    s.add_argument("--image-folder")
    s.add_argument("--ecg-folder")
    s.add_argument("--limit", type=int)
    s.add_argument("--batch-size", type=int, default=8)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--task-option", action="append", default=[], metavar="NAME=VALUE",
                   help="a task option, e.g. labels=NORM,MI,STTC,CD,HYP for multilabel")
    s.add_argument("--out", help="folder for the JSON record (byte-stable apart from its timestamp)")
    s.add_argument("--min-accuracy", type=float, help="exit with code 1 when accuracy is lower")
    s.set_defaults(func=cmd_eval)

    s = sub.add_parser("zoo", help="compare eval records: a table of models x task metrics (and a bar plot)")
    s.add_argument("records", nargs="+", help="JSON records written by gemfactory eval --out")
    s.add_argument("--format", choices=("md", "csv"), default="md")
    s.add_argument("--plot", metavar="PNG", help="also write a bar plot of the metrics")
    s.set_defaults(func=cmd_zoo)

    s = sub.add_parser("export", help="write a standalone HF model folder from a checkpoint")
    s.add_argument("checkpoint", help="model folder or run folder")
    s.add_argument("out", help="folder to write (replaced atomically)")
    s.add_argument("--merge", action="store_true",
                   help="fold a LoRA adapter not yet merged (CKPT/adapter, or --adapter) into the weights")
    s.add_argument("--adapter", metavar="DIR", help="with --merge: apply this adapter folder instead")
    s.set_defaults(func=cmd_export)

    s = sub.add_parser("data", help="data tools")
    dsub = s.add_subparsers(dest="data_command", required=True, metavar="TOOL")
    d = dsub.add_parser("synth", help="write the synthetic ECG dataset of the tiny recipe")
    d.add_argument("out")
    d.add_argument("--n-train", type=int, default=2400)
    d.add_argument("--n-test", type=int, default=300)
    d.add_argument("--seed", type=int, default=0)
    d.set_defaults(func=cmd_data_synth)
    d = dsub.add_parser("convert", help="convert LLaVA/GEM/PULSE JSON, ECGInstruct or PTB-XL to canonical JSON")
    d.add_argument("--from", dest="source", required=True, choices=("ecginstruct", "ptbxl", "llava"))
    d.add_argument("input", metavar="IN", help="JSON/JSONL file (ptbxl: the folder or ptbxl_database.csv)")
    d.add_argument("output", metavar="OUT", help="canonical JSON file to write")
    d.add_argument("--on-bad", choices=("skip", "error"), default="skip",
                   help="malformed items: skip them and list their ids (default), or refuse")
    d.add_argument("--ecg-folder", help="check that every record's .hea exists under this folder")
    d.add_argument("--image-folder", help="check that every image exists under this folder")
    d.add_argument("--rate", type=int, choices=(500, 100), default=500,
                   help="ptbxl: filename_hr (500 Hz) or filename_lr (100 Hz) records")
    d.add_argument("--split", action="store_true", help="ptbxl: strat_fold 10 goes to OUT_test.json")
    d.set_defaults(func=cmd_data_convert)

    s = sub.add_parser("template", help="template tools")
    tsub = s.add_subparsers(dest="template_command", required=True, metavar="TOOL")
    t = tsub.add_parser("check", help="render samples with the supervised spans marked")
    t.add_argument("recipe")
    t.add_argument("overrides", nargs="*")
    t.add_argument("--n", type=int, default=3)
    t.set_defaults(func=cmd_template_check)

    s = sub.add_parser("recipe", help="recipe tools")
    rsub = s.add_subparsers(dest="recipe_command", required=True, metavar="TOOL")
    r = rsub.add_parser("check", help="validate a recipe and build its model config (--tiny: train its tiny twin)")
    r.add_argument("recipe")
    r.add_argument("overrides", nargs="*", help="dotted overrides (before the options)")
    r.add_argument("--tiny", action="store_true",
                   help="build the recipe's architecture at test size (no weights) and run one step per stage")
    r.add_argument("--data", metavar="DIR",
                   help="synthetic data folder for --tiny, made there when it has no train.json "
                        "(default: a temporary folder)")
    r.set_defaults(func=cmd_recipe_check)
    return p


def add_load_flags(s: argparse.ArgumentParser) -> None:
    """How to load the checkpoint (passed to ``load_pretrained_model``, which validates them)."""
    s.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N, mps or auto")
    s.add_argument("--dtype", default="float32", help="float32, bfloat16 or float16")
    s.add_argument("--load-4bit", action="store_true", help="quantise the language model to 4 bits (CUDA)")
    s.add_argument("--load-8bit", action="store_true", help="quantise the language model to 8 bits (CUDA)")


def _positive(kind):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or value <= 0:
            raise argparse.ArgumentTypeError(f"expected a positive {kind.__name__}, got {text!r}")
        return value

    return parse


# commands ----------------------------------------------------------------------------------
def cmd_list(args) -> int:
    from .registry import REGISTRIES

    shown = 0
    for kind in [args.kind] if args.kind else KINDS:
        reg = REGISTRIES[kind]
        if args.plugins:
            rows, errors = imported_rows(reg, plugins_only=True), reg.plugin_errors()
        else:
            rows, errors = source_rows(reg)
        if args.plugins and not rows and not errors:
            continue
        print(f"{kind}:")
        for name, origin, summary in rows:
            print(f"  {name:<20} {origin:<32} {summary}")
        for name, msg in errors.items():
            print(f"  {name:<20} BROKEN: {msg}")
        shown += 1
    if args.plugins and not shown:
        groups = ", ".join(REGISTRIES[k].group for k in ([args.kind] if args.kind else KINDS))
        print(f"no plugin components installed (entry-point groups {groups})")
    return 0


def source_rows(reg) -> tuple[list[tuple[str, str, str]], dict[str, str]]:
    """(shown name, origin, summary) of every component, read from source without importing, and
    plugin load errors (a plugin entry point that cannot be read so is imported, and then the
    whole kind is, so its errors are known)."""
    from .registry_source import builtin_listing, plugin_listing

    exact, patterns = builtin_listing(reg)
    plugins, unread = plugin_listing(reg)
    if unread:
        return imported_rows(reg), reg.plugin_errors()
    clashes = {e.name for e in exact}
    return ([(e.name, "built-in", e.summary) for e in exact + patterns]
            + [(f"{e.origin}:{e.name}" if e.name in clashes else e.name, f"{e.origin} {e.version}".strip(), e.summary)
               for e in plugins]), {}


def imported_rows(reg, plugins_only: bool = False) -> list[tuple[str, str, str]]:
    from .registry import BUILTIN

    names = set(reg.names())
    rows = []
    for e in reg.entries():  # a plugin sharing a built-in's name is listed by its full name
        if plugins_only and e.origin == BUILTIN:
            continue
        name = f"{e.origin}:{e.name}" if f"{e.origin}:{e.name}" in names else e.name
        rows.append((name, _origin(e), _summary(e.obj)))
    return rows


def _origin(entry) -> str:
    return "built-in" if entry.origin == "gemfactory" else f"{entry.origin} {entry.version}".strip()


def _summary(obj) -> str:
    """First line of the component's own docstring (not one dataclass made up), else its module's."""
    from .registry_source import first_line

    doc = getattr(obj, "__doc__", None) or ""
    if isinstance(obj, type) and "__dataclass_fields__" in vars(obj) and doc.startswith(f"{obj.__name__}("):
        doc = ""
    if not doc.strip():
        doc = getattr(sys.modules.get(getattr(obj, "__module__", ""), None), "__doc__", None) or ""
    return first_line(doc)


def cmd_plugin_check(args) -> int:
    from .registry import REGISTRIES
    from .testing import ConformanceError, check_component, find_kind

    kind = args.kind or find_kind(args.name)
    print(f"{kind} {args.name!r} ({_origin(REGISTRIES[kind].entry(args.name))}):")
    findings = check_component(kind, args.name)
    for finding in findings:
        print(f"  {finding}")
    failed = [f for f in findings if not f.ok]
    if failed:
        raise ConformanceError(f"{kind} {args.name!r}: {len(failed)} of {len(findings)} checks failed; first: "
                               f"{failed[0].check}: {failed[0].detail}")
    print("ok")
    return 0


def cmd_train(args) -> int:
    from .config import load_recipe

    recipe = load_recipe(args.recipe, args.overrides)
    if args.dry_run:
        from .train.dry_run import dry_run

        dry_run(recipe, devices=args.devices)
        return 0
    from .train.trainer import train

    final = train(recipe, resume=args.resume)
    print(f"model saved to {final}")
    return 0


def cmd_memory(args) -> int:
    from .config import load_recipe
    from .train.memory import memory_report

    fits = memory_report(load_recipe(args.recipe, args.overrides), args.gpu_memory, args.devices)
    return 0 if fits else 1


def cmd_chat(args) -> int:
    from .infer.chat import run_chat

    return run_chat(args)


def cmd_app(args) -> int:
    from .app.launch import run_app

    return run_app(args)


def cmd_eval(args) -> int:
    from .eval.run import evaluate
    from .infer.load import load_pretrained_model

    options = dict(o.split("=", 1) for o in args.task_option if "=" in o)
    if len(options) != len(args.task_option):
        raise GemError(f"--task-option {next(o for o in args.task_option if '=' not in o)!r}: expected NAME=VALUE")
    loaded = load_pretrained_model(args.checkpoint)
    record = evaluate(loaded, args.task, args.data, args.image_folder, args.ecg_folder,
                      args.limit, args.batch_size, seed=args.seed, options=options)
    m = record["metrics"]
    print(f"{args.task}: accuracy {m['accuracy']:.3f} on {m['n']} samples ({m['unparsed']} unparsable)")
    for kind, km in m.get("by_kind", {}).items():
        print(f"  {kind}: accuracy {km['accuracy']:.3f} on {km['n']}")
    if args.out:
        from pathlib import Path

        from .eval import record as rec

        full = rec.build(args.checkpoint, record, args.data, args.seed, options)
        path = rec.write(full, Path(args.out) / rec.file_name(args.checkpoint, args.task))
        print(f"record written to {path}")
    if args.min_accuracy is not None and m["accuracy"] < args.min_accuracy:
        print(f"accuracy {m['accuracy']:.3f} is below --min-accuracy {args.min_accuracy}", file=sys.stderr)
        return 1
    return 0


def cmd_zoo(args) -> int:
    from .eval.zoo import load_records, plot, table

    records = load_records(args.records)
    print(table(records, args.format), end="")
    if args.plot:
        print(f"plot written to {plot(records, args.plot)}", file=sys.stderr)
    return 0


def cmd_export(args) -> int:
    from .model.export import export_checkpoint

    out, note = export_checkpoint(args.checkpoint, args.out, merge=args.merge, adapter=args.adapter)
    print(f"exported to {out} ({note})")
    return 0


def cmd_data_synth(args) -> int:
    from .data.synth import synthesize

    summary = synthesize(args.out, n_train=args.n_train, n_test=args.n_test, seed=args.seed)
    print(json.dumps(summary))
    return 0


def cmd_data_convert(args) -> int:
    from .data.convert import convert, split_path

    conv = convert(args.source, args.input, args.output, on_bad=args.on_bad, ecg_folder=args.ecg_folder,
                   image_folder=args.image_folder, rate=args.rate, split=args.split)
    if conv.bad:
        print(f"skipped {conv.bad_line()}", file=sys.stderr)
    line = f"wrote {len(conv.items)} items to {args.output}"
    if conv.test_items is not None:
        line += f" and {len(conv.test_items)} test items to {split_path(args.output)}"
    print(line)
    return 0


def cmd_template_check(args) -> int:
    from .template.check import check_recipe_template

    return check_recipe_template(args.recipe, args.overrides, args.n)


def cmd_recipe_check(args) -> int:
    from .config import load_recipe
    from .model.tiny import missing_local_paths

    recipe = load_recipe(args.recipe, args.overrides)
    if args.tiny:
        from .model.tiny import synthetic_data, tiny_check

        with synthetic_data(args.data) as data_dir:
            lines = tiny_check(recipe, data_dir)
        print(f"{args.recipe}: tiny twin (same architecture choices, test sizes, synthetic data)")
        for line in lines:
            print(line if line == "ok" else f"  {line}")
        return 0

    missing = missing_local_paths(recipe)
    # the config needs the weight folders; a tokenizer trained on the data needs data.train
    needs = {"model.llm.path", "model.llm.tokenizer", "model.vision.path", "model.ecg.path"}
    if not (recipe.model.llm.path or recipe.model.llm.tokenizer):
        needs |= {"data.train", f"stages.{recipe.stages[0].name}.train"}
    if not any(m.key in needs for m in missing):
        from .model.builder import build_config, tokenizer_for_recipe

        config = build_config(recipe.model, tokenizer_for_recipe(recipe))
        print(f"{args.recipe}: config ok (llm {config.llm_family}, template {config.template}, "
              f"vision {config.vision and config.vision['name']}, ecg {config.ecg and config.ecg['name']})")
    if missing:
        for m in missing:
            print(f"missing {m.key}: {m.path} ({m.what})", file=sys.stderr)
        print(f"error: {args.recipe}: {len(missing)} local path(s) missing; the architecture alone can be "
              f"checked without them: gemfactory recipe check {args.recipe} --tiny", file=sys.stderr)
        return 2
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
