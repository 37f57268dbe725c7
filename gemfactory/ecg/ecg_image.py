"""``ecg_image``: read an ECG as a picture, with any registered vision tower.

Each record of the batch is drawn as a standard 12-lead sheet (3 x 4 panels plus a lead II
rhythm strip, :func:`gemfactory.ecg.render.render_ecg`), preprocessed by the tower's own image
processor and passed through the tower; the tower's patch tokens are the ECG tokens. This gives
image-pretrained towers (CLIP, SigLIP, open_clip, timm) a way to read raw signals, and lets a
model trained on printed ECGs take WFDB records.

Architecture (``model.ecg.arch``)::

    tower:          name in the vision-tower registry (default "clip")
    tower_arch:     the tower's architecture, as model.vision.arch would give it
    tower_options:  the tower's options (select_layer, image_aspect, ...)
    dpi:            rendering resolution of the 280 x 215 mm page (default 30)
    grid_color:     colour of the millimetre grid (default "red")

``resolve`` completes ``tower_arch`` / ``tower_options`` through the tower class's own
``resolve``, so the saved config rebuilds the encoder with no files. ``tower_arch`` and
``tower_options`` given in a recipe are merged over the defaults of the same tower; naming
another tower starts from that tower's own defaults.

Gradients: rendering is a rasterisation on the CPU and is **not differentiable** -- no gradient
reaches the input signal (or anything before it). The tower, and everything after it, trains as
usual. The signal is drawn as given (it should be in mV; with a ``zscore`` or ``scale``
normalisation the page shows the normalised values at the same 10 mm per unit).
"""
from __future__ import annotations

from pathlib import Path

import torch

from ..errors import ConfigError, ECGError, GemError
from ..registry import ECG_ENCODERS, VISION_TOWERS
from ..weights import load_state_file
from .base import ECGEncoder, load_checked
from .render import grid_rgb, lead_index, render_ecg
from .spec import SignalSpec

#: Full-size default tower: CLIP ViT-B/16 at 224 px (weights come from ``model.ecg.path``).
_CLIP_B16 = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                 image_size=224, patch_size=16)
_TINY_CLIP = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                  image_size=32, patch_size=16)

# messages of the towers name the model.vision keys; inside this encoder they live elsewhere
_KEY_RENAMES = (
    ("model.vision.arch", "model.ecg.arch.tower_arch"),
    ("model.vision.options", "model.ecg.arch.tower_options"),
    ("model.vision.path", "model.ecg.path"),
    ("model.vision", "model.ecg.arch"),
)


def _renamed(exc: GemError) -> GemError:
    msg = str(exc)
    for old, new in _KEY_RENAMES:
        msg = msg.replace(old, new)
    return type(exc)(msg)


def _tower_class(name):
    if not isinstance(name, str) or not name:
        raise ConfigError(f"model.ecg.arch.tower: {name!r} must be the name of a vision tower")
    try:
        return VISION_TOWERS.get(name)
    except GemError as exc:
        raise ConfigError(f"model.ecg.arch.tower: {exc}") from None


def _check_render_settings(arch: dict, spec: SignalSpec) -> None:
    dpi = arch["dpi"]
    if isinstance(dpi, bool) or not isinstance(dpi, (int, float)) or not 10 <= dpi <= 1200:
        raise ConfigError(f"model.ecg.arch.dpi: {dpi!r} must be a number between 10 and 1200")
    try:
        grid_rgb(arch["grid_color"])
    except ECGError as exc:
        raise ConfigError(f"model.ecg.arch.grid_color: {exc}") from None
    try:
        lead_index(spec.leads, spec.n_leads)
    except ECGError as exc:
        raise ConfigError(
            f"model.ecg.signal.leads: the ecg_image encoder draws a 12-lead sheet, so the signal spec "
            f"must name the 12 standard leads ({exc})"
        ) from None


@ECG_ENCODERS.register("ecg_image")
class ECGImageEncoder(ECGEncoder):
    """Render the 12-lead record as a clinical sheet, read it with a vision tower."""

    default_arch = dict(tower="clip", tower_arch=_CLIP_B16, tower_options={}, dpi=30, grid_color="red")
    tiny_arch = dict(tower="clip", tower_arch=_TINY_CLIP, tower_options={}, dpi=30, grid_color="red",
                     _signal=dict(fs=100.0, n_samples=1000))
    default_signal = dict(fs=500.0, n_samples=5000, normalisation="none")

    @classmethod
    def resolve(cls, arch: dict, signal: dict, path: str | None = None) -> tuple[dict, SignalSpec]:
        """Complete arch (tower arch and options through the tower's own ``resolve``) and spec.

        ``path``: an HF folder whose config the tower reads (as ``model.vision.path`` would);
        a weight file, or None, leaves the architecture to ``tower_arch``.
        """
        arch, base = cls.split_arch(arch)
        for key in ("tower_arch", "tower_options"):
            if not isinstance(arch.get(key, {}), dict):
                raise ConfigError(f"model.ecg.arch.{key}: {arch[key]!r} must be a mapping")
        name = arch.get("tower", base["tower"])
        tower_cls = _tower_class(name)
        same = name == base["tower"]
        folder = str(path) if path and Path(path).is_dir() else None
        # a folder's own config replaces the default architecture; the recipe's keys go on top
        tower_arch = {**(base["tower_arch"] if same and folder is None else {}), **arch.get("tower_arch", {})}
        tower_options = {**(base["tower_options"] if same else {}), **arch.get("tower_options", {})}
        try:
            tower_arch, tower_options = tower_cls.resolve(tower_arch, tower_options, folder)
        except GemError as exc:
            raise _renamed(exc) from None
        merged = {
            "tower": name,
            "tower_arch": tower_arch,
            "tower_options": tower_options,
            "dpi": arch.get("dpi", base["dpi"]),
            "grid_color": arch.get("grid_color", base["grid_color"]),
        }
        spec = SignalSpec.from_dict({**cls.default_signal, **base.get("_signal", {}), **signal})
        _check_render_settings(merged, spec)
        return merged, spec

    def __init__(self, arch: dict, signal_spec: SignalSpec):
        super().__init__(arch, signal_spec)
        a = self.arch
        missing = {"tower", "tower_arch", "tower_options", "dpi", "grid_color"} - set(a)
        if missing:
            raise ConfigError(f"model.ecg.arch: missing {sorted(missing)}; build it through resolve()")
        _check_render_settings(a, signal_spec)
        try:
            self.tower = _tower_class(a["tower"])(a["tower_arch"], a["tower_options"])
        except GemError as exc:
            raise _renamed(exc) from None
        self._preprocess = self.tower.image_processor()
        self.hidden_size = self.tower.hidden_size
        self.num_tokens = self.tower.num_tokens

    # rendering -------------------------------------------------------------------------------
    def render(self, signals: torch.Tensor) -> list:
        """The batch [B, leads, samples] as B PIL pages (deterministic: same input, same pixels)."""
        if signals.dim() != 3 or signals.shape[1] != self.signal_spec.n_leads:
            raise ECGError(
                f"ecg_image: expected signals [batch, {self.signal_spec.n_leads} leads, samples], "
                f"got shape {tuple(signals.shape)}"
            )
        records = signals.detach().to("cpu", torch.float32).numpy()
        return [
            render_ecg(rec, self.signal_spec.fs, self.signal_spec.leads, dpi=self.arch["dpi"],
                       grid_color=self.arch["grid_color"])
            for rec in records
        ]

    def pixels(self, signals: torch.Tensor) -> torch.Tensor:
        """Rendered and preprocessed pages [B, 3, S, S], on the tower's device."""
        device = next(self.tower.parameters()).device
        return self._preprocess(self.render(signals)).to(device)

    def forward(self, signals: torch.Tensor) -> torch.Tensor:
        # No gradient flows back through the rendering; the tower itself is differentiable.
        return self.tower(self.pixels(signals))

    # weights ---------------------------------------------------------------------------------
    def load_pretrained(self, path: str) -> None:
        """A folder goes to the tower's own loader; a file is read as a state dict of the tower
        (bare, under ``tower.`` / ``ecg_encoder.tower.``, or a bare HF vision model, with or
        without ``vision_model.``, for towers that wrap one as ``model``)."""
        if Path(path).is_dir():
            try:
                self.tower.load_pretrained(str(path))
            except GemError as exc:
                raise _renamed(exc) from None
            return
        state = self.map_pretrained_names(load_state_file(path, key="model.ecg.path"))
        load_checked(self.tower, state, path, "model.ecg.arch.tower_arch", f" of the {self.arch['tower']!r} tower")

    def map_pretrained_names(self, state: dict) -> dict:
        """File keys -> the tower's own state-dict keys; keys that match nothing are dropped."""
        own = set(self.tower.state_dict())
        out = {}
        for key, value in state.items():
            key = key.removeprefix("module.")
            bare = key.removeprefix("ecg_encoder.").removeprefix("tower.")
            # HF CLIP / SigLIP files name the tower "vision_model." (older layouts, whole CLIPModel)
            for candidate in (key, bare, f"model.{bare}", f"model.{bare.removeprefix('vision_model.')}"):
                if candidate in own:
                    out[candidate] = value
                    break
        return out


__all__ = ["ECGImageEncoder"]
