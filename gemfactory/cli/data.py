"""``gemfactory`` commands: data tools: synthesis and conversion."""
from __future__ import annotations

import json
import sys


def register(sub) -> None:
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


def cmd_data_synth(args) -> int:
    from ..data.synth import synthesize

    summary = synthesize(args.out, n_train=args.n_train, n_test=args.n_test, seed=args.seed)
    print(json.dumps(summary))
    return 0


def cmd_data_convert(args) -> int:
    from ..data.convert import convert, split_path

    conv = convert(args.source, args.input, args.output, on_bad=args.on_bad, ecg_folder=args.ecg_folder,
                   image_folder=args.image_folder, rate=args.rate, split=args.split)
    if conv.bad:
        print(f"skipped {conv.bad_line()}", file=sys.stderr)
    line = f"wrote {len(conv.items)} items to {args.output}"
    if conv.test_items is not None:
        line += f" and {len(conv.test_items)} test items to {split_path(args.output)}"
    print(line)
    return 0
