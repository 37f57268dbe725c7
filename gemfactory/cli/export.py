"""``gemfactory`` commands: write standalone model folders."""
from __future__ import annotations



def register(sub) -> None:
    s = sub.add_parser("export", help="write a standalone HF model folder from a checkpoint")
    s.add_argument("checkpoint", help="model folder or run folder")
    s.add_argument("out", help="folder to write (replaced atomically)")
    s.add_argument("--merge", action="store_true",
                   help="fold a LoRA adapter not yet merged (CKPT/adapter, or --adapter) into the weights")
    s.add_argument("--adapter", metavar="DIR", help="with --merge: apply this adapter folder instead")
    s.add_argument("--format", dest="fmt", default="gemfactory", choices=("gemfactory", "llava-hf"),
                   help="gemfactory (default: GemForCausalLM folder) or llava-hf (LlavaForConditionalGeneration "
                        "with processor files, for HF pipelines / vLLM / SGLang; image-only models)")
    s.set_defaults(func=cmd_export)


def cmd_export(args) -> int:
    from ..model.export import export_checkpoint

    out, note = export_checkpoint(args.checkpoint, args.out, merge=args.merge, adapter=args.adapter, fmt=args.fmt)
    print(f"exported to {out} ({note})")
    return 0
