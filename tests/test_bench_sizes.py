"""scripts/bench_sizes.py runs end to end on a micro size and its LLaVA sampler follows LLaVA's
grouping rules; no figure is asserted (timings depend on the machine)."""
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

import bench_sizes
import bench_train


def test_llava_order_is_a_permutation_grouped_by_modality_then_sorted():
    gen = torch.Generator().manual_seed(1)
    lengths = torch.randint(10, 500, (37,), generator=gen).tolist()
    has_image = [bool(x) for x in torch.randint(0, 2, (37,), generator=gen).tolist()]
    order = bench_sizes.llava_order(lengths, has_image, batch=4)
    assert sorted(order) == list(range(37))
    chunks = [order[i:i + 4] for i in range(0, 37, 4)]
    n_full = len(chunks) - (2 if 37 % 4 else 1)  # the merged last partial megabatches come at the end
    for chunk in chunks[:n_full]:
        assert len({has_image[i] for i in chunk}) == 1  # one modality per batch
        assert [lengths[i] for i in chunk] == sorted((lengths[i] for i in chunk), reverse=True)
    assert bench_sizes.llava_order(lengths, has_image, 4) == order  # deterministic for a seed


@pytest.mark.filterwarnings("ignore")
def test_bench_size_runs_on_a_micro_size(tiny_data):
    spec = {"llm": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
                    "num_key_value_heads": 2},
            "vocab": 400, "image": {"image_size": 32, "patch_size": 8}, "samples": 10, "batch": 4, "repeat": 1}
    results = {}

    def build_gem(spec):
        model, tok = bench_train.build(tiny_data, tiny_data / "train.json", 1024, bench_sizes.model_config(spec))[:2]
        return model, tok.pad_token_id

    bench_sizes.bench_size("micro", spec, build_gem, lambda name, value, fmt: results.__setitem__(name, value))
    names = {t[0] for t in bench_sizes.targets("micro")}
    assert names <= results.keys()
    assert results["micro_packed_real_token_share"] == 1.0  # rows laid end to end: no padding
    for run in ("padded", "llava"):
        assert 0 < results[f"micro_{run}_real_token_share"] < 1
        assert results[{"padded": "micro_packed_vs_padded_random_limit", "llava": "micro_packed_vs_llava_grouped_limit"}[run]] > 1
