"""What a stage leaves behind for the user: metrics.jsonl, loss.png, summary.json and a summary line."""
from __future__ import annotations

import json
import logging
import resource
import sys
import time
from pathlib import Path

import torch
from transformers import TrainerCallback

log = logging.getLogger(__name__)


class StageFeedback(TrainerCallback):
    """Appends every logged step to ``metrics.jsonl``; at the end draws ``loss.png`` and logs
    samples/s, real (non-pad) tokens/s and peak memory. ``tokens`` is a callable returning the
    number of real tokens the collator has produced so far; ``loading`` (every rank calls it at the
    end) the data-loading totals over all ranks and workers (train/load_stats.py)."""

    def __init__(self, stage: str, out_dir: Path, tokens, loading=None):
        self.stage, self.out_dir, self.tokens = stage, Path(out_dir), tokens
        self.start = time.perf_counter()
        self.losses: list[tuple[int, float]] = []
        self.total_loading = loading
        self.loading = None  # set at the end of training

    def on_train_begin(self, args, state, control, **kwargs):
        self.start = time.perf_counter()
        self.tokens_at_start = self.tokens()
        self.first_step = state.global_step  # > 0 when resumed from a checkpoint
        if state.is_world_process_zero:
            self._keep_records_until(state.global_step)

    def _keep_records_until(self, step: int) -> None:
        """A fresh stage starts an empty log; a resumed one drops what the killed run logged after
        its last checkpoint (those steps run again)."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        path = self.out_dir / "metrics.jsonl"
        lines = path.read_text(encoding="utf-8").splitlines() if path.is_file() and step else []
        kept = [line for line in lines if line.strip() and json.loads(line).get("step", 0) <= step]
        self.losses = [(r["step"], float(r["loss"])) for r in map(json.loads, kept) if "loss" in r]
        tmp = path.with_name(".metrics.jsonl.tmp")
        tmp.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
        tmp.replace(path)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        record = {"stage": self.stage, "step": state.global_step, "epoch": state.epoch, **logs}
        with open(self.out_dir / "metrics.jsonl", "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")
        if "loss" in logs:
            self.losses.append((state.global_step, float(logs["loss"])))

    def on_train_end(self, args, state, control, **kwargs):
        self.loading = self.total_loading() if self.total_loading else None  # a collective: before the rank check
        if not state.is_world_process_zero:
            return
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        steps = state.global_step - self.first_step
        samples = steps * args.per_device_train_batch_size * args.gradient_accumulation_steps
        samples *= max(args.world_size, 1)
        tokens = self.tokens() - self.tokens_at_start
        if self.losses:
            self._plot()
        log.info("stage %s summary: %d steps in %.1f s, %.1f samples/s, %.0f tokens/s, peak memory %s",
                 self.stage, steps, elapsed, samples / elapsed, tokens / elapsed, peak_memory())
        summary = {"stage": self.stage, "steps": steps, "world_size": max(args.world_size, 1),
                   "dataloader_workers": args.dataloader_num_workers}
        if self.loading is not None:
            log.info("stage %s data (all ranks and workers): %d samples loaded, %d skipped; %s", self.stage,
                     self.loading.seen, len(self.loading.skipped), self.loading.ecg.summary())
            summary["loading"] = self.loading.as_dict()
        tmp = self.out_dir / ".summary.json.tmp"
        tmp.write_text(json.dumps(summary, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        tmp.replace(self.out_dir / "summary.json")

    def _plot(self) -> None:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        fig = Figure(figsize=(6, 3.5), dpi=100)
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        steps, losses = zip(*self.losses)
        ax.plot(steps, losses, marker="o", markersize=2)
        ax.set_xlabel("step"), ax.set_ylabel("training loss"), ax.set_title(f"stage {self.stage}")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(self.out_dir / "loss.png")


def peak_memory() -> str:
    if torch.cuda.is_available():
        return f"{torch.cuda.max_memory_allocated() / 2**30:.2f} GiB (GPU)"
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    gib = rss / 2**30 if sys.platform == "darwin" else rss / 2**20
    return f"{gib:.2f} GiB (process RSS)"
