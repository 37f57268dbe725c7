"""The one trainer every recipe goes through: HF Trainer + optional DeepSpeed, stage by stage."""
from __future__ import annotations

import json
import logging
import os
import socket
from pathlib import Path

import torch
from transformers import Trainer, TrainerCallback, TrainingArguments

from ..config import Recipe, StageConfig
from ..data.augment import ECGAugmenter
from ..data.dataset import Collator, GemDataset
from ..data.packing import REAL_TOKENS, PackingCollator
from ..data.processor import Processor
from ..data.recipe_tokenizer import tokenizer_for_recipe
from ..data.sampler import GroupedSampler, item_lengths, item_modality
from ..errors import ConfigError
from ..model.builder import build_model, recipe_template
from ..model.checkpoint import point_latest, save_checkpoint
from ..model.feature_cache import attach_feature_caches, detach_feature_caches
from ..registry import TEMPLATES
from .distributed import EpochSeededDataset, WorkerSeeds, is_main_process
from .feedback import StageFeedback
from .load_stats import LOAD_COUNTS, CountingCollator, LoadTotals, SkipGuard
from .resume import (
    AtomicCheckpoints,
    refuse_stale_checkpoints,
    remember_recipe,
    resume_at_scale,
    resume_point,
    stage_done,
)
from .tuning import apply_tuning, check_tuning, component_of, finish_stage, parameter_counts

log = logging.getLogger(__name__)
DEEPSPEED_DIR = Path(__file__).with_name("deepspeed")


class GemTrainer(AtomicCheckpoints, Trainer):
    """HF Trainer with per-component learning rates and checkpoints that are complete or absent."""

    def __init__(self, *args, lr_per_component: dict[str, float] | None = None,
                 group_lengths: list[int] | None = None, group_modalities: list[str] | None = None, **kwargs):
        self.lr_per_component = lr_per_component or {}
        # data.group_by: lengths (and modalities) of the training samples for GroupedSampler
        self.group_lengths, self.group_modalities = group_lengths, group_modalities
        self.real_tokens = 0  # non-pad tokens trained on (throughput reporting)
        self.load_totals = LoadTotals()  # this rank's, from the batches' LOAD_COUNTS
        super().__init__(*args, **kwargs)
        self.worker_seeds = WorkerSeeds(self.args.data_seed or self.args.seed, self.args.process_index)
        self.add_callback(EpochSeeds(self.worker_seeds))

    def get_train_dataloader(self):
        if not self.args.dataloader_num_workers:
            return super().get_train_dataloader()
        plain = self.train_dataset  # workers seeded by rank *and* epoch, instead of HF's seeding
        self.train_dataset = EpochSeededDataset(plain, self.worker_seeds)
        try:
            loader = super().get_train_dataloader()
        finally:
            self.train_dataset = plain
        loader.worker_init_fn = self.worker_seeds
        return loader

    def compute_loss(self, model, inputs, *args, **kwargs):
        counts = inputs.pop(LOAD_COUNTS, None)
        if model.training and counts is not None:
            self.load_totals.add(counts)
        packed_real = inputs.pop(REAL_TOKENS, None)  # packed rows (data.packing) carry their count
        if model.training and packed_real is not None:
            self.real_tokens += int(packed_real)
        elif model.training and "attention_mask" in inputs:
            self.real_tokens += int(inputs["attention_mask"].sum())
        return super().compute_loss(model, inputs, *args, **kwargs)

    def _get_train_sampler(self, train_dataset=None):
        if self.group_lengths is None:
            return super()._get_train_sampler(train_dataset)
        return GroupedSampler(self.group_lengths, self.group_modalities, self.args.per_device_train_batch_size,
                              self.args.world_size, self.args.data_seed or self.args.seed)

    def create_optimizer(self, model=None):
        if self.optimizer is not None:
            return self.optimizer
        model = self.model if model is None else model
        decay = set(self.get_decay_parameter_names(model))
        groups: dict[tuple, dict] = {}
        for name, p in model.named_parameters():
            if not p.requires_grad:
                continue
            lr = self.lr_per_component.get(component_of(name), self.args.learning_rate)
            wd = self.args.weight_decay if name in decay else 0.0
            groups.setdefault((lr, wd), {"params": [], "lr": lr, "weight_decay": wd})["params"].append(p)
        cls, kwargs = self.get_optimizer_cls_and_kwargs(self.args, model)
        kwargs.pop("lr", None)
        self.optimizer = cls(list(groups.values()), **kwargs)
        return self.optimizer


class EpochSeeds(TrainerCallback):
    """Tells the workers' seeding which epoch starts (before that epoch's workers are started)."""

    def __init__(self, seeds: WorkerSeeds):
        self.seeds = seeds

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.seeds.epoch = int(state.epoch + 1e-6)  # a resumed mid-epoch state reads e.g. 0.5


def _packed_attention(model) -> str | None:
    """Packed rows under sdpa: attend per sample (model/packed_attention.py) instead of over a
    block-diagonal mask; returns the kernel to restore after the stage."""
    from ..model.packed_attention import NAME

    current = model.language_model.config._attn_implementation
    if current != "sdpa":
        return None
    model.language_model.set_attn_implementation(NAME)
    log.info("data.packing: attention runs per packed sample (%s)", NAME)
    return current


def _varlen_kernel(model) -> bool:
    from ..model.packed_attention import VARLEN_KERNELS

    return model.language_model.config._attn_implementation in VARLEN_KERNELS


def _check_fused_loss(model, zero: int | None) -> bool:
    """training.fused_loss reads lm_head's weight outside its forward: not under ZeRO-3, where it is
    partitioned, nor for an LM whose logits are not a plain linear layer's output."""
    from ..model.chunked_loss import supports_fused_loss

    why = "ZeRO-3 partitions lm_head's weight" if zero == 3 else supports_fused_loss(model.language_model)
    if why:
        raise ConfigError(f"training.fused_loss: cannot be used here: {why}; set it to false")
    return True


class AugmentEpochs(TrainerCallback):
    """data.augment draws anew each epoch: the augmenter learns the epoch before its workers start."""

    def __init__(self, augmenter):
        self.augmenter = augmenter

    def on_epoch_begin(self, args, state, control, **kwargs):
        if self.augmenter is not None:
            self.augmenter.epoch = int(state.epoch + 1e-6)


class FlushFeatureCaches(TrainerCallback):
    """Features computed so far go to disk with every checkpoint, so a resumed run reuses them."""

    def __init__(self, caches):
        self.caches = caches

    def on_save(self, args, state, control, **kwargs):
        for cache in self.caches:
            cache.flush()


def grouping(group_by: str, dataset: GemDataset, tokenizer, processor: Processor) -> dict:
    """GemTrainer's grouping arguments for ``data.group_by``."""
    if group_by == "none":
        return {}
    lengths = item_lengths(dataset.items, tokenizer, processor.modality_tokens)
    modalities = [item_modality(item) for item in dataset.items] if group_by == "modality_length" else None
    return {"group_lengths": lengths, "group_modalities": modalities}


def training_collator(recipe: Recipe, tokenizer, processor: Processor, flatten: bool = False) -> CountingCollator:
    """``flatten``: packed rows laid end to end (the model's kernel attends per sample)."""
    collate = (PackingCollator(tokenizer.pad_token_id, recipe.data.pack_tokens or processor.max_length,
                               flatten=flatten) if recipe.data.packing else Collator(tokenizer.pad_token_id))
    return CountingCollator(collate)  # counts made in worker processes travel with the batches


def deepspeed_config(name: str | None) -> dict | None:
    if not name:
        return None
    bundled = DEEPSPEED_DIR / f"{name}.json"
    path = bundled if bundled.is_file() else Path(name)
    if not path.is_file():
        names = sorted(p.stem for p in DEEPSPEED_DIR.glob("*.json"))
        raise ConfigError(
            f"training.deepspeed: {name!r} is neither a bundled config ({', '.join(names)}) nor a JSON file"
        )
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError(f"training.deepspeed: {path}: invalid JSON ({exc.msg}, line {exc.lineno})") from None


def prepare_distributed_env(using_deepspeed: bool) -> None:
    """Single-process DeepSpeed still needs a process group: fill in what a launcher would set."""
    if not using_deepspeed:
        return
    if not torch.cuda.is_available():
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    if "RANK" not in os.environ:
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()), RANK="0",
                          WORLD_SIZE="1", LOCAL_RANK="0")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def training_arguments(recipe: Recipe, stage: StageConfig, out_dir: Path,
                       unused_parameters: bool = False) -> TrainingArguments:
    """``unused_parameters``: some trainable weights get no gradient (a tower's layers above its
    select_layer), which DDP must be told about."""
    t = recipe.training
    ds = deepspeed_config(t.deepspeed)
    on_cpu = not torch.cuda.is_available()
    bf16 = t.bf16 or (ds is not None and on_cpu)  # DeepSpeed on CPU runs in bf16 only
    return TrainingArguments(
        output_dir=str(out_dir),
        num_train_epochs=stage.epochs,
        max_steps=stage.max_steps,
        per_device_train_batch_size=stage.batch_size,
        gradient_accumulation_steps=stage.gradient_accumulation_steps,
        learning_rate=stage.lr,
        weight_decay=stage.weight_decay,
        warmup_steps=stage.warmup_ratio,
        lr_scheduler_type=stage.scheduler,
        logging_steps=t.logging_steps,
        save_strategy="steps" if t.save_steps else "no",
        save_steps=t.save_steps or 500,
        save_total_limit=t.save_total_limit,
        seed=t.seed,
        data_seed=t.seed,
        bf16=bf16,
        deepspeed=ds,
        use_cpu=on_cpu,
        ddp_backend="gloo" if on_cpu and (ds is not None or _world_size() > 1) else None,
        ddp_find_unused_parameters=unused_parameters,
        gradient_checkpointing=t.gradient_checkpointing,
        remove_unused_columns=False,
        dataloader_num_workers=recipe.data.num_workers,
        # workers kept across epochs (no restart wait per epoch) and 4 batches ahead each
        dataloader_persistent_workers=recipe.data.num_workers > 0,
        dataloader_prefetch_factor=4 if recipe.data.num_workers > 0 else None,
        report_to=t.report_to or "none",
        disable_tqdm=False,
    )


def train(recipe: Recipe, resume: bool = False) -> Path:
    """Run every stage; return the folder of the final model. ``resume``: skip the stages that
    finished and continue the current one from its latest complete checkpoint."""
    prepare_distributed_env(bool(recipe.training.deepspeed))
    ds = deepspeed_config(recipe.training.deepspeed)  # fail early on a bad name
    check_offload(ds, recipe.training.deepspeed)
    check_tuning(recipe, zero_stage(ds))  # e.g. qlora without bitsandbytes: before anything is built
    torch.manual_seed(recipe.training.seed)
    run_dir = Path(recipe.training.output_dir)
    template = recipe_template(recipe)
    for stage in recipe.stages:  # unknown stage templates fail before any training
        if stage.template:
            TEMPLATES.get(stage.template)
    if is_main_process():
        remember_recipe(run_dir, recipe.to_dict(), resume)
    done = 0
    while resume and done < len(recipe.stages) and stage_done(run_dir / recipe.stages[done].name):
        done += 1
    if done:
        log.info("--resume: stage(s) %s already finished", ", ".join(s.name for s in recipe.stages[:done]))
        model, tokenizer = load_stage_output(run_dir / recipe.stages[done - 1].name / "model")
    else:
        tokenizer = tokenizer_for_recipe(recipe, template)
        # ZeRO-3: HF's switch is on while TrainingArguments live, so the LLM is created already
        # partitioned (deepspeed.zero.Init) instead of whole on every rank
        zero3_switch = training_arguments(recipe, recipe.stages[0], run_dir) if zero_stage(ds) == 3 else None
        if zero3_switch is not None:  # join the process group zero.Init partitions over
            import deepspeed

            deepspeed.init_distributed(dist_backend=zero3_switch.ddp_backend or "nccl")
        model = build_model(recipe.model, tokenizer, origin=recipe.source)
        del zero3_switch
    final = run_dir / recipe.stages[-1].name / "model"
    for stage in recipe.stages[done:]:
        final = run_stage(recipe, stage, model, tokenizer, template, run_dir, resume)
    return final


def check_offload(ds: dict | None, name: str | None) -> None:
    """Offloading moves weights / optimizer state from GPU to CPU memory: meaningless (and not
    supported by DeepSpeed's CPU accelerator) where no GPU is visible."""
    zero = (ds or {}).get("zero_optimization", {})
    offloaded = [k for k in ("offload_param", "offload_optimizer")
                 if zero.get(k, {}).get("device", "none") not in ("none", None)]
    if offloaded and not torch.cuda.is_available():
        raise ConfigError(f"training.deepspeed: {name} offloads {' and '.join(offloaded)} from the GPU, but no "
                          "CUDA GPU is visible here; use zero2 or zero3 on a CPU-only machine")


def zero_stage(ds: dict | None) -> int | None:
    return ds["zero_optimization"].get("stage", 0) if ds and "zero_optimization" in ds else None


def load_stage_output(folder: Path):
    from transformers import AutoTokenizer

    from ..model.modeling import GemForCausalLM

    return GemForCausalLM.from_pretrained(folder, dtype=torch.float32), AutoTokenizer.from_pretrained(folder)


def _world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def run_stage(recipe: Recipe, stage: StageConfig, model, tokenizer, template, run_dir: Path,
              resume: bool = False) -> Path:
    zero = zero_stage(deepspeed_config(recipe.training.deepspeed))
    tunes = apply_tuning(model, stage, zero)
    counts = parameter_counts(model)
    log.info("stage %s: %s", stage.name, ", ".join(
        f"{k} {tunes[k]} ({v[0]:,}/{v[1]:,} trainable)" for k, v in counts.items()))
    processor, dataset = stage_dataset(recipe, stage, model, tokenizer, template)
    stage_dir = run_dir / stage.name
    checkpoint = resume_point(stage_dir) if resume else None
    if not resume and is_main_process():
        refuse_stale_checkpoints(stage_dir, stage.name)
    packed_kernel = _packed_attention(model) if recipe.data.packing else None
    model.fused_loss = recipe.training.fused_loss and _check_fused_loss(model, zero)
    caches = (attach_feature_caches(model, tunes, recipe.data.feature_cache_dir or run_dir / "feature_cache",
                                    recipe.data.feature_cache_max_gb) if recipe.data.feature_cache else [])
    trainer = GemTrainer(
        model=model,
        args=training_arguments(recipe, stage, stage_dir, unused_parameters=tunes.get("vision", "frozen") != "frozen"),
        train_dataset=dataset,
        data_collator=training_collator(recipe, tokenizer, processor, flatten=_varlen_kernel(model)),
        processing_class=tokenizer,
        lr_per_component=stage.lr_per_component,
        **grouping(recipe.data.group_by, dataset, tokenizer, processor),
        callbacks=[FlushFeatureCaches(caches), AugmentEpochs(processor.augment)],
    )
    feedback = StageFeedback(stage.name, stage_dir, lambda: trainer.real_tokens, trainer.load_totals.over_ranks)
    trainer.add_callback(SkipGuard(trainer.load_totals, len(dataset), recipe.data.max_bad_fraction))
    trainer.add_callback(feedback)
    if trainer.is_deepspeed_enabled:
        log.info("stage %s: DeepSpeed ZeRO-%s, world size %d", stage.name, zero, trainer.args.world_size)
    if checkpoint is not None:
        log.info("stage %s: resuming from %s", stage.name, checkpoint)
        resume_at_scale(trainer, checkpoint)
    result = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    log.info("stage %s finished: %s", stage.name, result.metrics)
    skipped = feedback.loading.skipped  # over all ranks and workers
    if skipped and is_main_process():
        log.warning("stage %s skipped %d sample(s): %s", stage.name, len(skipped), ", ".join(sorted(skipped)))
    detach_feature_caches(model)
    if packed_kernel is not None:
        model.language_model.set_attn_implementation(packed_kernel)  # the checkpoint keeps the usual kernel
    adapter = finish_stage(model, tunes)
    return save_stage_model(trainer, model, tokenizer, recipe, stage.name, run_dir, zero, adapter)


def stage_dataset(recipe: Recipe, stage: StageConfig, model, tokenizer, template) -> tuple:
    """The stage's processor (its template, length, augmentation) and training dataset."""
    train_path = stage.train or recipe.data.train
    if not train_path:
        raise ConfigError(f"{recipe.source}: stages.{stage.name}: no training data (data.train)")
    if stage.template:
        template = TEMPLATES.get(stage.template)()
    processor = Processor.from_model(model, tokenizer, template, stage.max_length or recipe.data.max_length)
    processor.random_visual_prompts = recipe.data.random_visual_prompts
    processor.augment = ECGAugmenter.from_config(recipe.data.augment, processor.signal_spec, recipe.training.seed)
    dataset = GemDataset(train_path, processor, stage.image_folder or recipe.data.image_folder,
                         stage.ecg_folder or recipe.data.ecg_folder, recipe.data.on_bad_sample)
    return processor, dataset


def save_stage_model(trainer, model, tokenizer, recipe: Recipe, stage: str, run_dir: Path, zero,
                     adapter=None) -> Path:
    """End of a stage, after its tune types finished: keep a merged LoRA adapter in model/adapter/,
    gather ZeRO-3 shards (every rank takes part), rank 0 writes ``<stage>/model`` and points
    ``latest`` at it."""
    if adapter is not None:
        log.info("stage %s: LoRA adapter merged into the weights; also saved in model/adapter", stage)
    extra = (lambda folder: adapter.save(folder / "adapter", merged=True)) if adapter is not None else None
    state_dict = trainer.accelerator.get_state_dict(trainer.model_wrapped) if zero == 3 else None
    out = run_dir / stage / "model"
    if trainer.args.should_save:
        save_checkpoint(model, tokenizer, out, recipe.to_dict(), extra=extra, state_dict=state_dict)
        point_latest(run_dir, out)
    trainer.accelerator.wait_for_everyone()
    return out
