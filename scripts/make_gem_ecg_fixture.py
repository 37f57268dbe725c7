"""Regenerate tests/data/gem_ecg_features.pt by running GEM's own ECG tower code.

Reads ``ecg_coca/open_clip/transformer.py`` of lanxiang1017/GEM at SEED_COMMIT from a bare git
mirror (``--mirror``, e.g. the one the ``fetch`` tool makes), imports it as it is and builds a
small ``EcgTransformer`` with the arguments GEM's ``_build_ecg_tower`` passes (GELU, open_clip's
LayerNorm, no layer scale, heads = width // head_width). Random weights, a random signal, and the
tower's outputs are written in ECG-CoCa's checkpoint layout (``state_dict`` with ``module.ecg.``
names, as GEM's ``get_ecg_encoder`` reads it):

- ``gem_features``: ``forward(x, output_last_transformer_layer=True)``, what GEM's ``CLIPECGTower``
  hands its ECG projector (CLS + patch tokens, before ``ln_post``);
- ``ln_post_tokens``: the patch tokens of the ordinary ``output_tokens=True`` forward (after ``ln_post``).

Stubbed: the package's ``utils`` module (it imports torchvision for an image-only helper); the
tower code uses only ``to_2tuple`` from it, which is not on the ECG path. Usage:

    python scripts/make_gem_ecg_fixture.py --mirror /work/.mirror/lanxiang1017+GEM/repo
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import types
from pathlib import Path

import torch

SEED_REPO = "lanxiang1017/GEM"
SEED_COMMIT = "c8a580faae819c57c008e94fa080f5d3c6881769"
SEED_FILES = ("ecg_coca/open_clip/transformer.py", "ecg_coca/open_clip/pos_embed.py")
# tiny tower: width 32 (head_width 16 -> 2 heads), 2 blocks, patch 50 over 12 x 500 samples
ARCH = dict(width=32, layers=2, heads=2, patch_size=50, mlp_ratio=4.0)
LEADS, SAMPLES, OUTPUT_DIM = 12, 500, 16
OUT = Path(__file__).resolve().parent.parent / "tests" / "data" / "gem_ecg_features.pt"


def import_seed_transformer(mirror: str):
    package = tempfile.mkdtemp(prefix="gem_seed_")
    pkg_dir = Path(package) / "gem_open_clip"
    pkg_dir.mkdir()
    (pkg_dir / "__init__.py").write_text("")
    for path in SEED_FILES:
        text = subprocess.run(["git", f"--git-dir={mirror}", "show", f"{SEED_COMMIT}:{path}"],
                              check=True, capture_output=True, text=True).stdout
        (pkg_dir / Path(path).name).write_text(text)
    utils = types.ModuleType("gem_open_clip.utils")
    utils.to_2tuple = lambda x: tuple(x) if isinstance(x, (tuple, list)) else (x, x)
    sys.modules["gem_open_clip.utils"] = utils
    sys.path.insert(0, package)
    from gem_open_clip import transformer  # (the seed's file, imported as it is)

    return transformer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mirror", required=True, help="bare git dir of lanxiang1017/GEM")
    args = parser.parse_args()
    seed = import_seed_transformer(args.mirror)
    torch.manual_seed(17)
    tower = seed.EcgTransformer(
        seq_length=SAMPLES, patch_size=ARCH["patch_size"], lead_num=LEADS, width=ARCH["width"],
        layers=ARCH["layers"], heads=ARCH["heads"], mlp_ratio=ARCH["mlp_ratio"], ls_init_value=None,
        patch_dropout=0.0, attentional_pool=False, output_dim=OUTPUT_DIM, output_tokens=True,
        act_layer=torch.nn.GELU, norm_layer=seed.LayerNorm,
    ).eval()
    with torch.no_grad():  # the seed leaves LayerNorms at 1/0: give every tensor random values
        for p in tower.parameters():
            p.normal_(0.0, 0.2)
    signal = torch.randn(2, LEADS, SAMPLES)
    with torch.no_grad():
        gem_features = tower(signal, output_last_transformer_layer=True)
        _, ln_post_tokens = tower(signal)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    torch.save({
        "seed": f"{SEED_REPO}@{SEED_COMMIT}",
        "arch": ARCH, "signal": {"n_leads": LEADS, "n_samples": SAMPLES},
        "state_dict": {f"module.ecg.{k}": v.clone() for k, v in tower.state_dict().items()},
        "input": signal, "gem_features": gem_features, "ln_post_tokens": ln_post_tokens,
    }, OUT)
    print(f"wrote {OUT}: gem_features {tuple(gem_features.shape)}, ln_post_tokens {tuple(ln_post_tokens.shape)}")


if __name__ == "__main__":
    main()
