"""``gemfactory`` commands: score checkpoints and compare eval records."""
from __future__ import annotations

import sys

from ..errors import GemError


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
    s.add_argument("--out", help="folder for the JSON record (byte-stable apart from its timestamp)")
    s.add_argument("--min-accuracy", type=float, help="exit with code 1 when accuracy is lower")
    s.set_defaults(func=cmd_eval)

    s = sub.add_parser("zoo", help="compare eval records: a table of models x task metrics (and a bar plot)")
    s.add_argument("records", nargs="+", help="JSON records written by gemfactory eval --out")
    s.add_argument("--format", choices=("md", "csv"), default="md")
    s.add_argument("--plot", metavar="PNG", help="also write a bar plot of the metrics")
    s.set_defaults(func=cmd_zoo)


def cmd_eval(args) -> int:
    from ..eval.run import evaluate
    from ..infer.load import load_pretrained_model

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
    for label, lm in m.get("by_label", {}).items():
        print(f"  {label}: accuracy {lm['accuracy']:.3f} on {lm['n']}")
    for unusable in m.get("unusable", []):  # records a task could not score, each with its reason
        print(f"  not scored: {unusable['record']}: {unusable['reason']}")
    if args.out:
        from pathlib import Path

        from ..eval import record as rec

        full = rec.build(args.checkpoint, record, args.data, args.seed, options)
        path = rec.write(full, Path(args.out) / rec.file_name(args.checkpoint, args.task))
        print(f"record written to {path}")
    if args.min_accuracy is not None and m["accuracy"] < args.min_accuracy:
        print(f"accuracy {m['accuracy']:.3f} is below --min-accuracy {args.min_accuracy}", file=sys.stderr)
        return 1
    return 0


def cmd_zoo(args) -> int:
    from ..eval.zoo import load_records, plot, table

    records = load_records(args.records)
    print(table(records, args.format), end="")
    if args.plot:
        print(f"plot written to {plot(records, args.plot)}", file=sys.stderr)
    return 0
