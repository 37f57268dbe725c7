"""One sample (conversation + optional ECG record + optional image) -> model inputs.

Shared by training, chat, the app and eval so that a prompt is built the same way everywhere.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from ..ecg.spec import SignalSpec
from ..errors import DataError, ECGError
from ..template.base import (
    ECG_TOKEN, IGNORE_INDEX, IMAGE_TOKEN, ChatTemplate, Turn, normalize_conversation,
)
from .augment import ECGAugmenter
from .context import apply_context
from .ecg_io import ECGStats, read_ecg

MAX_IMAGE_PIXELS = 64_000_000  # refuse decompression bombs with a clear message


@dataclass
class Processor:
    tokenizer: object
    template: ChatTemplate
    modality_tokens: dict[str, int]  # "image"/"ecg" -> tokens per input
    image_processor: object = None  # callable(list[PIL]) -> tensor
    signal_spec: SignalSpec | None = None
    layout: str = "separate"
    max_length: int = 2048
    ecg_stats: ECGStats = field(default_factory=ECGStats)
    # ViP-LLaVA augmentation: chance per image sample without visual_prompts of one random prompt
    random_visual_prompts: float = 0.0
    # data.augment (training only: the trainer sets it; eval, chat and the app leave it None)
    augment: ECGAugmenter | None = None

    @classmethod
    def from_model(cls, model, tokenizer, template: ChatTemplate, max_length: int = 2048):
        return cls(
            tokenizer=tokenizer,
            template=template,
            modality_tokens=model.modality_tokens(),
            image_processor=model.vision_tower.image_processor() if model.vision_tower is not None else None,
            signal_spec=model.ecg_encoder.signal_spec if model.ecg_encoder is not None else None,
            layout=model.config.layout,
            max_length=max_length,
        )

    # inputs -------------------------------------------------------------------------------
    def open_image(self, path: str | Path) -> Image.Image:
        if self.image_processor is None:
            raise DataError(f"image {path}: this model has no vision tower")
        p = Path(path)
        if not p.is_file():
            raise DataError(f"image not found: {p}")
        try:
            with Image.open(p) as img:
                if img.width * img.height > MAX_IMAGE_PIXELS:
                    raise DataError(
                        f"image {p}: {img.width}x{img.height} pixels is over the limit of {MAX_IMAGE_PIXELS}"
                    )
                return img.convert("RGB")
        except Image.DecompressionBombError as exc:
            raise DataError(f"image {p}: over the limit of {MAX_IMAGE_PIXELS} pixels ({exc})") from None
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            raise DataError(f"image {p}: not a readable image ({type(exc).__name__}: {exc})") from None

    def image_inputs(self, image: Image.Image | str | Path) -> dict:
        """``pixel_values`` [views, 3, S, S] and ``image_size`` (height, width) of one image."""
        if not isinstance(image, Image.Image):
            image = self.open_image(image)
        elif self.image_processor is None:
            raise DataError("this model has no vision tower, so it cannot take an image")
        return {"pixel_values": self.image_processor.views(image),
                "image_size": torch.tensor([image.height, image.width])}

    def prompted_image(self, image: Image.Image | str | Path, prompts=None, item_id: str = "?"):
        """The image with its ViP-LLaVA visual prompts drawn on it (see :mod:`.visual_prompt`).

        Without prompts, ``random_visual_prompts`` is the chance of drawing one random prompt,
        seeded from ``item_id`` so a sample always gets the same one.
        """
        from .visual_prompt import draw_prompts, random_prompt, seed_for

        if not isinstance(image, Image.Image):
            image = self.open_image(image)
        if not prompts and self.random_visual_prompts > 0:
            rng = np.random.default_rng(seed_for(item_id))
            if rng.random() < self.random_visual_prompts:
                prompts = [random_prompt(image.size, rng)]
        return draw_prompts(image, prompts) if prompts else image

    def load_ecg(self, record: str | Path) -> torch.Tensor:
        if self.signal_spec is None:
            raise DataError(f"ECG {record}: this model has no ECG encoder")
        return torch.from_numpy(read_ecg(record, self.signal_spec, stats=self.ecg_stats))

    # text ---------------------------------------------------------------------------------
    def _place(self, turns: list[Turn], has_image: bool, has_ecg: bool, item_id: str) -> list[Turn]:
        """Check placeholders against the inputs; apply GEM's layout."""
        text = "".join(t.text for t in turns if t.role != "assistant")
        n_img, n_ecg = text.count(IMAGE_TOKEN), text.count(ECG_TOKEN)
        if any(IMAGE_TOKEN in t.text or ECG_TOKEN in t.text for t in turns if t.role == "assistant"):
            raise DataError(f"sample {item_id}: placeholders may only appear in user turns")
        if self.layout == "gem" and has_ecg and n_ecg == 0 and n_img == 1:
            # GEM: the single <image> stands for the ECG tokens followed by the image tokens
            repl = ECG_TOKEN + (IMAGE_TOKEN if has_image else "")
            turns = [Turn(t.role, t.text.replace(IMAGE_TOKEN, repl)) for t in turns]
            n_ecg, n_img = 1, int(has_image)
        for name, count, present in (("<image>", n_img, has_image), ("<ecg>", n_ecg, has_ecg)):
            if count != int(present):
                have = "one" if present else "no"
                raise DataError(
                    f"sample {item_id}: the text has {count} {name} placeholder(s) but the sample has "
                    f"{have} {name[1:-1]} input (expected {int(present)})"
                )
        return turns

    def encode(self, turns: list[Turn], *, has_image=False, has_ecg=False, item_id="?",
               generation=False, image_size=None) -> dict:
        turns = self._place(turns, has_image, has_ecg, item_id)
        enc = self.template.encode(turns, self.tokenizer, add_generation_prompt=generation)
        ids, labels = self._expand(enc.input_ids, enc.labels, image_size)
        if not generation:
            if len(ids) > self.max_length:
                ids, labels = self._truncate(ids, labels, item_id)
            if all(label == IGNORE_INDEX for label in labels):
                raise DataError(f"sample {item_id}: no supervised token (no assistant reply to learn)")
        return {"input_ids": torch.tensor(ids), "labels": torch.tensor(labels)}

    def _expand(self, ids: list[int], labels: list[int], image_size=None):
        repeat = {}
        for name, token in (("image", IMAGE_TOKEN), ("ecg", ECG_TOKEN)):
            if name in self.modality_tokens:
                repeat[self.tokenizer.convert_tokens_to_ids(token)] = self.modality_tokens[name]
        if image_size is not None and "image" in self.modality_tokens:  # any-resolution: varies per image
            repeat[self.tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)] = self.image_processor.num_tokens(
                image_size.tolist(), self.modality_tokens["image"])
        out_ids, out_labels = [], []
        for i, label in zip(ids, labels):
            n = repeat.get(i, 1)
            out_ids += [i] * n
            out_labels += [IGNORE_INDEX if n > 1 or i in repeat else label] * n
        return out_ids, out_labels

    def _truncate(self, ids, labels, item_id):
        special = {self.tokenizer.convert_tokens_to_ids(t) for t in (IMAGE_TOKEN, ECG_TOKEN)}
        last_modality = max((k for k, i in enumerate(ids) if i in special), default=-1)
        if last_modality >= self.max_length:
            raise DataError(
                f"sample {item_id}: {len(ids)} tokens exceed max_length {self.max_length} and cutting "
                f"would drop ECG/image tokens"
            )
        return ids[: self.max_length], labels[: self.max_length]

    # whole samples ------------------------------------------------------------------------
    def sample(self, item: dict, image_folder=".", ecg_folder=".") -> dict:
        """A LLaVA/GEM JSON item -> features (raises DataError on any problem).

        An optional ``context`` (``{"caption": ..., "ocr": ...}``, LLaVA-Graph) is written into the
        first user turn as ``Caption: ...`` / ``OCR: ...`` lines after its opening placeholders
        (see :mod:`gemfactory.data.context` and docs/data.md); only the reply is supervised.
        """
        item_id = str(item.get("id", "?"))
        convs = item.get("conversations", item.get("conversation"))
        turns = normalize_conversation(convs, item_id)
        turns = apply_context(turns, item.get("context"), item_id)
        image = item.get("image")
        ecg = item.get("ecg")
        for key, value in (("image", image), ("ecg", ecg)):
            if value is not None and not isinstance(value, str):
                raise DataError(f"sample {item_id}: {key!r} must be a path string, got {type(value).__name__}")
        prompts = item.get("visual_prompts")
        if prompts and not image:
            raise DataError(f"sample {item_id}: has visual_prompts but no image to draw them on")
        try:
            if image:
                inputs = self.image_inputs(self.prompted_image(Path(image_folder) / image, prompts, item_id))
            else:
                inputs = {}
            if ecg:
                inputs["ecg"] = self.load_ecg(Path(ecg_folder) / ecg)
                if self.augment is not None:
                    inputs["ecg"] = self.augment(inputs["ecg"], item_id)
        except (DataError, ECGError) as exc:  # a DataError, so on_bad_sample=skip skips unreadable records too
            raise DataError(f"sample {item_id}: {exc}") from None
        feats = self.encode(turns, has_image=bool(image), has_ecg=bool(ecg), item_id=item_id,
                            image_size=inputs.get("image_size"))
        feats.update(inputs)
        feats["id"] = item_id
        return feats
