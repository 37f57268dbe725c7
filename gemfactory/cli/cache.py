"""``gemfactory cache``: list and prune frozen-tower feature cache folders."""
from __future__ import annotations

import time

from .common import positive


def register(sub) -> None:
    s = sub.add_parser("cache", help="list or prune a feature cache folder (data.feature_cache_dir)")
    actions = s.add_subparsers(dest="cache_command", required=True, metavar="ACTION")
    ls = actions.add_parser("ls", help="one line per tower: modality, tower, shards, size, last use")
    ls.add_argument("dir", help="the feature cache folder")
    ls.set_defaults(func=cmd_ls)
    pr = actions.add_parser("prune", help="remove shards not used for DAYS and/or the least recently used "
                                          "ones until the folder holds at most GB")
    pr.add_argument("dir", help="the feature cache folder")
    pr.add_argument("--older-than", type=positive(float), metavar="DAYS", help="remove shards unused for DAYS days")
    pr.add_argument("--max-gb", type=positive(float), metavar="GB", help="then keep at most GB gigabytes")
    pr.add_argument("--dry-run", action="store_true", help="only say what would be removed")
    pr.set_defaults(func=cmd_prune)


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit} ago"
    return "just now"


def cmd_ls(args) -> int:
    from ..model.feature_store import GB, tower_folders

    folders = tower_folders(args.dir)
    now = time.time()
    for f in folders:
        print(f"{f.path.name}  {f.modality}  {f.tower}  {len(f.shards)} shard(s)  {f.bytes / GB:.3f} GB  "
              f"last used {_age(now - f.last_used)}")
    total = sum(f.bytes for f in folders)
    print(f"{len(folders)} tower folder(s), {total / GB:.3f} GB in {args.dir}")
    return 0


def cmd_prune(args) -> int:
    from ..errors import ConfigError
    from ..model.feature_store import GB, prune

    if args.older_than is None and args.max_gb is None:
        raise ConfigError("gemfactory cache prune: give --older-than DAYS and/or --max-gb GB")
    removed = prune(args.dir, args.older_than, args.max_gb * GB if args.max_gb else None, dry_run=args.dry_run)
    verb = "would remove" if args.dry_run else "removed"
    for shard in removed:
        print(f"{verb} {shard}")
    print(f"{verb} {len(removed)} shard(s)")
    return 0
