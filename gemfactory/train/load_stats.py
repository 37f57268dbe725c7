"""What loading the training data did, summed over dataloader workers and ranks.

Samples are loaded in dataloader worker processes (``data.num_workers``) on every rank, so counters
kept by the dataset or collator stay in those processes. Each training batch therefore carries its
own counts (:class:`CountingCollator`, from the samples' ``ECG_DELTA`` and skip markers); the trainer
pops them and adds them up per rank, and the ranks combine theirs (:meth:`LoadTotals.over_ranks`)
for the stage summary and the bad-sample guard.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from transformers import TrainerCallback

from ..data.dataset import ECG_DELTA
from ..data.ecg_io import ECGStats
from ..errors import DataError
from .distributed import all_gather

LOAD_COUNTS = "load_counts"  # batch key: {"seen": n, "skipped": {id: reason}, "ecg": {ECGStats field: n}}


class CountingCollator:
    """Wraps the training collator: each batch also carries what loading its samples did."""

    def __init__(self, collate):
        self.collate = collate

    def __call__(self, features: list[dict]) -> dict:
        batch = self.collate(features)
        ecg: dict[str, int] = {}
        for f in features:
            for key, n in f.get(ECG_DELTA, {}).items():
                ecg[key] = ecg.get(key, 0) + n
        skipped = {f["id"]: f["skip"] for f in features if "skip" in f}
        batch[LOAD_COUNTS] = {"seen": len(features), "skipped": skipped, "ecg": ecg}
        return batch


@dataclass
class LoadTotals:
    seen: int = 0  # samples handed to the collator, usable or not
    skipped: dict[str, str] = field(default_factory=dict)  # id -> reason
    ecg: ECGStats = field(default_factory=ECGStats)

    def add(self, counts: dict) -> None:
        self.seen += counts.get("seen", 0)
        self.skipped.update(counts.get("skipped", {}))
        for key, n in counts.get("ecg", {}).items():
            setattr(self.ecg, key, getattr(self.ecg, key) + n)

    def over_ranks(self) -> LoadTotals:
        """Every rank's totals combined (a collective: all ranks call it); skipped ids are a union
        (a sample skipped on two ranks in different epochs counts once)."""
        total = LoadTotals()
        for seen, skipped, ecg in all_gather((self.seen, self.skipped, asdict(self.ecg))):
            total.add({"seen": seen, "skipped": skipped, "ecg": ecg})
        return total

    def as_dict(self) -> dict:
        return {"samples_seen": self.seen, "samples_skipped": len(self.skipped),
                "skipped_ids": sorted(self.skipped), "ecg": {f.name: getattr(self.ecg, f.name) for f in fields(ECGStats)}}


class SkipGuard(TrainerCallback):
    """Stops the run with a clear error once too many samples were unusable, counted over all ranks
    so that every rank stops at the same step."""

    def __init__(self, totals: LoadTotals, dataset_size: int, max_fraction: float):
        self.totals, self.size, self.max_fraction = totals, dataset_size, max_fraction
        self.known: dict[str, str] = {}  # skipped on any rank so far
        self.reported: set[str] = set()  # this rank's ids already shared

    def on_step_end(self, args, state, control, **kwargs):
        new = {k: v for k, v in self.totals.skipped.items() if k not in self.reported}
        self.reported.update(new)
        for part in all_gather(new):
            self.known.update(part)
        fraction = len(self.known) / self.size
        if fraction > self.max_fraction:
            first = min(self.known.items())
            raise DataError(
                f"{len(self.known)} of {self.size} samples ({fraction:.1%}) were unusable, over "
                f"data.max_bad_fraction={self.max_fraction}; first: {first[0]}: {first[1]}"
            )
