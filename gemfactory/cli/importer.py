"""``gemfactory import``: bring a seed's released checkpoint into gemfactory's format."""
from __future__ import annotations


def register(sub) -> None:
    s = sub.add_parser("import", help="convert a released LLaVA / llava-hf / ViP-LLaVA / TinyLLaVA / GEM "
                                      "checkpoint into a gemfactory checkpoint")
    s.add_argument("--from", dest="fmt", required=True, metavar="FORMAT",
                   help="llava, llava-hf, vip-llava, tinyllava or gem (see docs/formats.md)")
    s.add_argument("src", help="the seed's checkpoint folder (or a hub id org/name[@rev])")
    s.add_argument("out", help="gemfactory checkpoint folder to write (replaced atomically)")
    s.add_argument("--vision-tower", metavar="FOLDER",
                   help="CLIP folder or hub id when the checkpoint does not hold its tower (default: mm_vision_tower)")
    s.add_argument("--ecg-tower", metavar="FILE",
                   help="GEM: ECG-CoCa checkpoint when the checkpoint does not hold its ECG tower "
                        "(default: mm_ecg_tower)")
    s.set_defaults(func=cmd_import)


def cmd_import(args) -> int:
    from ..formats.importer import import_checkpoint

    out, note = import_checkpoint(args.fmt, args.src, args.out, vision_tower=args.vision_tower,
                                  ecg_tower=args.ecg_tower)
    print(f"imported to {out} ({note})")
    return 0
