"""Train a few tiny combinations on the synthetic task, evaluate each, and publish the zoo table.

    python scripts/make_zoo.py            # ~12 minutes on 2 quiet CPU cores
    python scripts/make_zoo.py --quick    # a smoke run: fewer samples and steps (numbers mean little)

Writes OUT/{data,runs,records}, docs/zoo.md, docs/zoo.png and the table between the
``<!-- zoo:start -->`` / ``<!-- zoo:end -->`` markers of README.md.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# name -> dotted overrides of recipes/tiny-gem.yaml (each checked with `gemfactory recipe check`)
COMBOS = {
    "tiny-gem-resnet1d": [],  # the recipe's own encoder
    "tiny-gem-vit1d": ["model.ecg.name=vit1d", "model.ecg.arch={tiny: true, width: 128, layers: 4, heads: 4, patch_size: 25}"],
    "tiny-gem-ecg_image": ["model.ecg.name=ecg_image", "model.ecg.arch={tiny: true}"],
}
SETTINGS = {"full": {"n_train": 1200, "n_test": 100, "steps": ["stages.finetune.epochs=2"]},
            "quick": {"n_train": 96, "n_test": 24, "steps": ["stages.finetune.max_steps=4"]}}


def gem(*args) -> None:
    cmd = [sys.executable, "-m", "gemfactory.cli", "-q", *map(str, args)]
    print("+", " ".join(cmd[3:]), flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT)


def replace_between(text: str, start: str, end: str, body: str) -> str:
    head, sep, rest = text.partition(start)
    _, sep2, tail = rest.partition(end)
    if not (sep and sep2):
        raise SystemExit(f"README.md: markers {start} / {end} not found")
    return f"{head}{start}\n{body}{end}{tail}"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/zoo")
    p.add_argument("--quick", action="store_true", help="smoke run: 96 train samples, 4 steps per model")
    p.add_argument("--no-publish", action="store_true", help="leave docs/zoo.md and README.md alone")
    args = p.parse_args()
    mode = "quick" if args.quick else "full"
    cfg, out, t0 = SETTINGS[mode], ROOT / args.out, time.time()
    data, records = out / "data", out / "records"
    gem("data", "synth", data, "--n-train", cfg["n_train"], "--n-test", cfg["n_test"])
    paths = [f"data.train={data / 'train.json'}", f"data.eval={data / 'test.json'}",
             f"data.image_folder={data / 'images'}", f"data.ecg_folder={data / 'ecg'}"]
    for name, overrides in COMBOS.items():
        run = out / "runs" / name
        gem("train", "recipes/tiny-gem.yaml", *paths, f"training.output_dir={run}", *cfg["steps"], *overrides)
        gem("eval", run, "--task", "synthetic", "--data", data / "test.json", "--out", records)

    from gemfactory.eval.zoo import load_records, plot, table

    recs = load_records(sorted(records.glob("*.json")))
    md = table(recs, "md")
    print(md)
    if args.no_publish:
        return 0
    note = (f"Tiny models trained on CPU by `python scripts/make_zoo.py{' --quick' if args.quick else ''}` "
            f"({cfg['n_train']} synthetic training records, {' '.join(cfg['steps'])}; "
            f"eval on {cfg['n_test']} held-out records, {time.time() - t0:.0f} s in all). "
            f"Best per column in bold.\n\n")
    plot(recs, ROOT / "docs" / "zoo.png")
    (ROOT / "docs" / "zoo.md").write_text(f"# Model zoo\n\n{note}{md}\n![metrics](zoo.png)\n")
    readme = ROOT / "README.md"
    readme.write_text(replace_between(readme.read_text(), "<!-- zoo:start -->", "<!-- zoo:end -->", note + md))
    print(f"wrote docs/zoo.md, docs/zoo.png and README.md ({time.time() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
