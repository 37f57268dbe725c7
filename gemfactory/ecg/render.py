"""Draw a 12-lead ECG as a standard clinical sheet (3 x 4 panels + lead II rhythm strip).

The page is 280 mm x 215 mm at 25 mm/s and 10 mm/mV on millimetre paper:

* rows 1-3: ``I aVR V1 V4`` / ``II aVL V2 V5`` / ``III aVF V3 V6``; column ``c`` shows the
  time window ``[2.5c, 2.5c + 2.5)`` s of its lead;
* row 4: a 10 s lead II rhythm strip;
* a 1 mV x 0.2 s calibration pulse at the start of every row, lead labels, and a footer.

Rendering uses matplotlib's Agg canvas through the object-oriented API only (no pyplot
state). Everything that does not depend on the signal (millimetre grid rasterised with numpy,
labels, calibration pulses, footer) is drawn once per (dpi, grid colour, fs) and cached as a
raster; a page then copies that raster into a fresh Agg buffer and draws all 13 traces as one
``LineCollection`` (~10 ms at dpi 30). The same input and options always give the same pixels,
and :func:`save_ecg_image` the same bytes (PIL writes no timestamp or software metadata).
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
from PIL import Image

from .spec import STANDARD_LEADS
from ..errors import ECGError
from ..fileio import atomic_open

__all__ = [
    "GRID_COLORS",
    "LAYOUT",
    "PAGE_MM",
    "page_size_px",
    "render_ecg",
    "save_ecg_image",
]

#: Page size in millimetres (width, height).
PAGE_MM = (280.0, 215.0)
#: Paper speed (mm/s) and gain (mm/mV).
MM_PER_S = 25.0
MM_PER_MV = 10.0
#: Lead names of the 3 x 4 panel block, row by row.
LAYOUT = (("I", "aVR", "V1", "V4"), ("II", "aVL", "V2", "V5"), ("III", "aVF", "V3", "V6"))
RHYTHM_LEAD = "II"
COLUMN_S = 2.5
RHYTHM_S = 10.0
#: Named grid colours (RGB in 0..1); anything else is passed to matplotlib's colour parser.
GRID_COLORS = {
    "red": (0.89, 0.16, 0.16),
    "pink": (0.96, 0.42, 0.55),
    "blue": (0.16, 0.36, 0.86),
    "green": (0.08, 0.58, 0.26),
    "grey": (0.45, 0.45, 0.45),
    "gray": (0.45, 0.45, 0.45),
}
AUGMENT_KEYS = ("rotation", "noise")

# Layout in mm, y measured upwards from the bottom edge of the page. Baselines and the trace
# origin sit on 5 mm grid lines, like a real machine's output.
_CAL_X = 5.0  # calibration pulse start
_TRACE_X = 15.0  # t = 0 of every row
_ROW_Y = (175.0, 130.0, 85.0, 40.0)  # baselines of rows 1..3 and the rhythm strip
_LABEL_DY = 6.0  # lead label height above the baseline
_FOOTER_Y = 6.0


def page_size_px(dpi: float = 100) -> tuple[int, int]:
    """(width, height) in pixels of a page rendered at ``dpi``."""
    w_mm, h_mm = PAGE_MM
    return int(round(w_mm / 25.4 * dpi)), int(round(h_mm / 25.4 * dpi))


def grid_rgb(grid_color) -> tuple[float, float, float]:
    if isinstance(grid_color, str) and grid_color.strip().lower() in GRID_COLORS:
        return GRID_COLORS[grid_color.strip().lower()]
    from matplotlib.colors import to_rgb

    try:
        return tuple(float(c) for c in to_rgb(grid_color))
    except (ValueError, TypeError):
        raise ECGError(
            f"render: unknown grid colour {grid_color!r}; expected one of "
            f"{sorted(GRID_COLORS)} or a matplotlib colour string"
        ) from None


def _line_coverage(n_px: int, px_per_mm: float, n_mm: int, step: int, width_px: float) -> np.ndarray:
    """Fraction of each pixel (along one axis) covered by lines every ``step`` mm."""
    pos = np.arange(0, n_mm + 1, step, dtype=np.float64) * px_per_mm
    lo, hi = pos - width_px / 2, pos + width_px / 2
    first = np.floor(lo).astype(np.int64)
    cov = np.zeros(n_px, dtype=np.float64)
    for j in range(int(np.ceil(width_px)) + 2):
        pix = first + j
        c = np.clip(np.minimum(pix + 1, hi) - np.maximum(pix, lo), 0.0, None)
        ok = (pix >= 0) & (pix < n_px) & (c > 0)
        np.add.at(cov, pix[ok], c[ok])
    return np.clip(cov, 0.0, 1.0)


@functools.lru_cache(maxsize=32)
def _grid_raster(dpi: float, rgb: tuple[float, float, float]) -> np.ndarray:
    """Millimetre grid as an (H, W, 3) uint8 image, row 0 at the top of the page."""
    w_px, h_px = page_size_px(dpi)
    w_mm, h_mm = int(PAGE_MM[0]), int(PAGE_MM[1])
    sx, sy = w_px / PAGE_MM[0], h_px / PAGE_MM[1]
    ppm = dpi / 25.4
    thin_w = max(0.1 * ppm, 0.6)
    thick_w = max(0.3 * ppm, 1.0)

    def axis_alpha(n_px, s, n_mm):
        thin = _line_coverage(n_px, s, n_mm, 1, thin_w) * 0.35
        thick = _line_coverage(n_px, s, n_mm, 5, thick_w) * 0.85
        return np.maximum(thin, thick)

    ax = axis_alpha(w_px, sx, w_mm)  # x lines (vertical)
    ay = axis_alpha(h_px, sy, h_mm)[::-1]  # y measured from the bottom; rows from the top
    alpha = 1.0 - (1.0 - ay[:, None]) * (1.0 - ax[None, :])
    alpha = 0.05 + 0.95 * alpha  # faint paper tint
    color = np.asarray(rgb, dtype=np.float64) * 255.0
    img = 255.0 * (1.0 - alpha[..., None]) + color[None, None, :] * alpha[..., None]
    out = np.ascontiguousarray(np.round(img).astype(np.uint8))
    out.setflags(write=False)
    return out


def lead_index(leads: Sequence[str], n_rows: int) -> dict[str, int]:
    if isinstance(leads, str):
        raise ECGError(f"render: leads must be a sequence of lead names, got the string {leads!r}")
    canon = {name.lower(): name for name in STANDARD_LEADS}
    leads = list(leads)
    if len(leads) != n_rows:
        raise ECGError(
            f"render: {len(leads)} lead names given for a signal with {n_rows} rows; "
            f"expected one name per row"
        )
    index: dict[str, int] = {}
    unknown = []
    for i, name in enumerate(leads):
        key = canon.get(str(name).strip().lower())
        if key is None:
            unknown.append(name)
        elif key in index:
            raise ECGError(f"render: lead {key!r} given twice in {leads}")
        else:
            index[key] = i
    if unknown:
        raise ECGError(
            f"render: unknown lead names {unknown}; expected the 12 standard leads {list(STANDARD_LEADS)}"
        )
    missing = [name for name in STANDARD_LEADS if name not in index]
    if missing:
        raise ECGError(f"render: leads {missing} missing; expected all 12 of {list(STANDARD_LEADS)}")
    return index


def _check_signal(signal_mv, fs) -> np.ndarray:
    try:
        sig = np.asarray(signal_mv, dtype=np.float64)
    except (TypeError, ValueError):
        raise ECGError("render: signal must be a numeric array of shape (12, T) in mV") from None
    if sig.ndim != 2 or sig.shape[0] != len(STANDARD_LEADS) or sig.shape[1] < 2:
        hint = " (transposed? expected leads first)" if sig.ndim == 2 and sig.shape[1] == 12 else ""
        raise ECGError(f"render: signal shape {sig.shape}; expected (12, T) with T >= 2{hint}")
    if np.isinf(sig).any():
        raise ECGError("render: signal contains infinite values; expected finite mV (NaN marks gaps)")
    if np.isnan(sig).all():
        raise ECGError("render: signal is NaN everywhere; expected finite mV values")
    try:
        fs = float(fs)
    except (TypeError, ValueError):
        raise ECGError(f"render: fs must be a number > 0, got {fs!r}") from None
    if not np.isfinite(fs) or fs <= 0:
        raise ECGError(f"render: fs must be a finite number > 0 Hz, got {fs}")
    return sig


def _trace(y: np.ndarray, fs: float, t0: float, t1: float, x0: float, y0: float):
    """Segment of ``y`` for t in [t0, t1) at page position (x0 = t0, y0 = baseline), or None."""
    i0 = int(np.ceil(t0 * fs - 1e-9))
    i1 = min(int(np.ceil(t1 * fs - 1e-9)), y.shape[0])
    if i1 - i0 < 2:
        return None
    t = np.arange(i0, i1, dtype=np.float64) / fs
    return np.column_stack((x0 + (t - t0) * MM_PER_S, y0 + y[i0:i1] * MM_PER_MV))


def _cal_pulse(y0: float) -> np.ndarray:
    h = 1.0 * MM_PER_MV
    w = 0.2 * MM_PER_S
    x = _CAL_X
    return np.array(
        [[x, y0], [x + 2, y0], [x + 2, y0 + h], [x + 2 + w, y0 + h], [x + 2 + w, y0], [x + 4 + w, y0]]
    )


def _augment(img: Image.Image, augment: Mapping, seed: int) -> Image.Image:
    if not isinstance(augment, Mapping):
        raise ECGError(f"render: augment must be a dict with keys {list(AUGMENT_KEYS)}, got {augment!r}")
    unknown = sorted(set(augment) - set(AUGMENT_KEYS))
    if unknown:
        raise ECGError(f"render: unknown augment keys {unknown}; expected some of {list(AUGMENT_KEYS)}")
    vals = {}
    for key in AUGMENT_KEYS:
        v = augment.get(key, 0) or 0
        try:
            v = float(v)
        except (TypeError, ValueError):
            raise ECGError(f"render: augment {key!r} must be a number >= 0, got {v!r}") from None
        if not np.isfinite(v) or v < 0:
            raise ECGError(f"render: augment {key!r} must be a number >= 0, got {v}")
        vals[key] = v
    rng = np.random.default_rng(seed)
    angle = float(rng.uniform(-vals["rotation"], vals["rotation"])) if vals["rotation"] else 0.0
    if angle:
        img = img.rotate(angle, resample=Image.BILINEAR, expand=False, fillcolor=(255, 255, 255))
    if vals["noise"]:
        arr = np.asarray(img, dtype=np.float32)
        arr = arr + rng.normal(0.0, vals["noise"], size=arr.shape).astype(np.float32)
        img = Image.fromarray(np.clip(np.round(arr), 0, 255).astype(np.uint8), "RGB")
    return img


def _mm_transform(dpi: float):
    """Page millimetres (y up from the bottom edge) -> display pixels."""
    from matplotlib.transforms import Affine2D

    w_px, h_px = page_size_px(dpi)
    return Affine2D().scale(w_px / PAGE_MM[0], h_px / PAGE_MM[1])


def _line_width_pt(dpi: float) -> float:
    return max(0.3 / 25.4 * 72, 72.0 / dpi)  # 0.3 mm, at least one pixel


def _new_canvas(dpi: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    w_px, h_px = page_size_px(dpi)
    fig = Figure(figsize=(w_px / dpi, h_px / dpi), dpi=dpi, facecolor="white")
    return fig, FigureCanvasAgg(fig)


@functools.lru_cache(maxsize=32)
def _background(dpi: float, rgb: tuple[float, float, float], footer: str) -> np.ndarray:
    """Everything that does not depend on the signal, as an (H, W, 4) uint8 RGBA raster:
    the grid, lead labels, calibration pulses, column ticks and the footer."""
    from matplotlib.collections import LineCollection

    fig, canvas = _new_canvas(dpi)
    mm = _mm_transform(dpi)
    fig.figimage(_grid_raster(dpi, rgb), xo=0, yo=0, origin="upper", zorder=-1)
    text_pt = 3.2 / 25.4 * 72  # ~3.2 mm tall labels
    segments = []
    rows = [*LAYOUT, (RHYTHM_LEAD,)]
    for r, row in enumerate(rows):
        y0 = _ROW_Y[r]
        segments.append(_cal_pulse(y0))
        for c, name in enumerate(row):
            x0 = _TRACE_X + c * COLUMN_S * MM_PER_S
            if c:
                segments.append(np.array([[x0, y0 - 3.0], [x0, y0 + 3.0]]))
            # First column: label above the calibration pulse, clear of the first beat.
            lx, ly = (_CAL_X, y0 + 11.0) if c == 0 else (x0 + 1.0, y0 + _LABEL_DY)
            fig.text(lx, ly, name, fontsize=text_pt, ha="left", va="bottom", transform=mm)
    fig.text(_TRACE_X, _FOOTER_Y, footer, fontsize=text_pt * 0.8, ha="left", va="bottom", transform=mm)
    fig.add_artist(
        LineCollection(segments, colors="black", linewidths=_line_width_pt(dpi), transform=mm,
                       capstyle="round", joinstyle="round")
    )
    canvas.draw()
    out = np.array(canvas.buffer_rgba(), dtype=np.uint8, copy=True)
    out.setflags(write=False)
    return out


def render_ecg(
    signal_mv: np.ndarray,
    fs: float,
    leads: Sequence[str] = STANDARD_LEADS,
    *,
    dpi: float = 100,
    grid_color="red",
    augment: Mapping | None = None,
    seed: int = 0,
) -> Image.Image:
    """Render a 12-lead ECG (``signal_mv``: (12, T) in mV, rows named by ``leads``) as an RGB page.

    ``leads`` are matched case-insensitively to the standard names and may be in any order.
    Signals shorter than 10 s are drawn as far as they go, longer ones are cut at 10 s; NaN
    samples leave gaps. ``grid_color`` is one of :data:`GRID_COLORS` or a matplotlib colour.
    ``augment`` (optional) = ``{"rotation": max_abs_degrees, "noise": pixel_std}``, drawn
    from ``seed``: same seed, same pixels. The page is :func:`page_size_px` pixels.
    """
    from matplotlib.collections import LineCollection

    sig = _check_signal(signal_mv, fs)
    fs = float(fs)
    index = lead_index(leads, sig.shape[0])
    try:
        dpi = float(dpi)
    except (TypeError, ValueError):
        raise ECGError(f"render: dpi must be a number between 10 and 1200, got {dpi!r}") from None
    if not 10 <= dpi <= 1200:
        raise ECGError(f"render: dpi must be between 10 and 1200, got {dpi}")
    if augment is not None and not isinstance(augment, Mapping):
        raise ECGError(f"render: augment must be a dict with keys {list(AUGMENT_KEYS)}, got {augment!r}")
    rgb = grid_rgb(grid_color)
    background = _background(dpi, rgb, f"{MM_PER_S:g} mm/s   {MM_PER_MV:g} mm/mV   {fs:g} Hz")

    segments = []
    for r, row in enumerate(LAYOUT):
        for c, name in enumerate(row):
            t0 = c * COLUMN_S
            seg = _trace(sig[index[name]], fs, t0, t0 + COLUMN_S, _TRACE_X + t0 * MM_PER_S, _ROW_Y[r])
            if seg is not None:
                segments.append(seg)
    seg = _trace(sig[index[RHYTHM_LEAD]], fs, 0.0, RHYTHM_S, _TRACE_X, _ROW_Y[3])
    if seg is not None:
        segments.append(seg)

    # Blit: paint the cached background into a fresh Agg buffer, then draw only the traces.
    fig, canvas = _new_canvas(dpi)
    renderer = canvas.get_renderer()
    buf = np.asarray(renderer.buffer_rgba())
    buf[...] = background
    traces = LineCollection(
        segments, colors="black", linewidths=_line_width_pt(dpi), transform=_mm_transform(dpi),
        capstyle="round", joinstyle="round",
    )
    traces.set_figure(fig)
    traces.draw(renderer)
    img = Image.fromarray(np.ascontiguousarray(buf[:, :, :3]), "RGB")
    if augment:
        img = _augment(img, augment, seed)
    return img


def save_ecg_image(path, signal_mv: np.ndarray, fs: float, leads: Sequence[str] = STANDARD_LEADS, **kwargs) -> Path:
    """Render with :func:`render_ecg` (same keyword options) and write ``path`` atomically.

    The format follows the suffix (``.png`` by default); PNGs carry no metadata, so the same
    input and options give byte-identical files.
    """
    path = Path(path)
    img = render_ecg(signal_mv, fs, leads, **kwargs)
    fmt = Image.registered_extensions().get(path.suffix.lower(), "PNG")
    with atomic_open(path, "wb") as fh:
        # zlib level 3: smaller than the default 6 on these pages, and about twice as fast.
        img.save(fh, format=fmt, **({"compress_level": 3} if fmt == "PNG" else {}))
    return path
