"""``gemfactory`` commands: score checkpoints and compare eval records."""
from __future__ import annotations

import sys

from ..errors import GemError
from .common import add_context_flags, add_load_flags


def register(sub) -> None:
    s = sub.add_parser("eval", help="score a checkpoint on an eval task")
    s.add_argument("checkpoint")
    s.add_argument("--task", required=True)
    s.add_argument("--data", required=True, help="JSON list of items (heart_rate: a folder of WFDB records)")
    s.add_argument("--image-folder")
    s.add_argument("--ecg-folder")
    s.add_argument("--limit", type=int)
    s.add_argument("--batch-size", type=int, default=8)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--task-option", action="append", default=[], metavar="NAME=VALUE",
                   help="a task option, e.g. labels=NORM,MI,STTC,CD,HYP for multilabel")
    add_context_flags(s)
    add_load_flags(s)  # --device/--dtype/--load-4bit/--load-8bit, validated as chat and app validate them
    s.add_argument("--out", help="folder for the JSON record (byte-stable apart from its timestamp)")
    s.add_argument("--min-accuracy", type=float, help="exit with code 1 when accuracy is lower")
    s.set_defaults(func=cmd_eval)

    s = sub.add_parser("zoo", help="compare eval records: a table of models x task metrics (and a bar plot)")
    s.add_argument("records", nargs="+", help="JSON records written by gemfactory eval --out")
    s.add_argument("--format", choices=("md", "csv"), default="md")
    s.add_argument("--plot", metavar="PNG", help="also write a bar plot of the metrics")
    s.set_defaults(func=cmd_zoo)


def cmd_eval(args) -> int:
    from ..train.distributed import distributed_run

    with distributed_run(join=True):  # under torchrun the ranks share the batches (eval/run.py)
        return _eval(args)


def _eval(args) -> int:
    from ..data.context import context_from_flags
    from ..eval.run import evaluate
    from ..infer.load import load_pretrained_model
    from ..train.distributed import is_main_process

    say = print if is_main_process() else _quiet  # one report (and one record) from rank 0

    options = dict(o.split("=", 1) for o in args.task_option if "=" in o)
    if len(options) != len(args.task_option):
        raise GemError(f"--task-option {next(o for o in args.task_option if '=' not in o)!r}: expected NAME=VALUE")
    context = context_from_flags(args.caption, args.ocr, args.context)  # bad flags fail before loading
    loaded = load_pretrained_model(args.checkpoint, device=args.device, dtype=args.dtype,
                                   load_4bit=args.load_4bit, load_8bit=args.load_8bit)
    record = evaluate(loaded, args.task, args.data, args.image_folder, args.ecg_folder,
                      args.limit, args.batch_size, seed=args.seed, options=options, context=context)
    m = record["metrics"]
    say(f"{args.task}: accuracy {m['accuracy']:.3f} on {m['n']} samples ({m['unparsed']} unparsable)")
    for kind, km in m.get("by_kind", {}).items():
        say(f"  {kind}: accuracy {km['accuracy']:.3f} on {km['n']}")
    for label, lm in m.get("by_label", {}).items():
        say(f"  {label}: accuracy {lm['accuracy']:.3f} on {lm['n']}")
    for unusable in m.get("unusable", []):  # records a task could not score, each with its reason
        say(f"  not scored: {unusable['record']}: {unusable['reason']}")
    if args.out and is_main_process():
        from pathlib import Path

        from ..eval import record as rec

        full = rec.build(args.checkpoint, record, args.data, args.seed, options)
        path = rec.write(full, Path(args.out) / rec.file_name(args.checkpoint, args.task))
        say(f"record written to {path}")
    if args.min_accuracy is not None and m["accuracy"] < args.min_accuracy:
        say(f"accuracy {m['accuracy']:.3f} is below --min-accuracy {args.min_accuracy}", file=sys.stderr)
        return 1
    return 0


def _quiet(*args, **kwargs) -> None:
    pass


def cmd_zoo(args) -> int:
    from ..eval.zoo import load_records, plot, table

    records = load_records(args.records)
    print(table(records, args.format), end="")
    if args.plot:
        print(f"plot written to {plot(records, args.plot)}", file=sys.stderr)
    return 0
