"""ViP-LLaVA visual prompts: marks drawn straight onto the pixels of an image.

ViP-LLaVA needs no region encoder: a rectangle, ellipse, arrow, scribble, dot or mask contour is
blended into the image itself, and the text refers to it by colour and shape ("the red rectangle").
A prompt is a dict::

    {"type": "bbox",     "bbox": [x1, y1, x2, y2]}        # rectangle outline
    {"type": "ellipse",  "bbox": [x1, y1, x2, y2]}        # outline of the ellipse in that box
    {"type": "arrow",    "start": [x, y], "end": [x, y]}  # line with a filled head at ``end``
    {"type": "scribble", "points": [[x, y], ...]}         # open polyline, at least 2 points
    {"type": "point",    "point": [x, y], "radius": r}    # filled dot (radius optional)
    {"type": "mask",     "points": [[x, y], ...]}         # closed contour, at least 3 points

plus the optional style keys ``color`` (a palette name or ``#rrggbb``; default red), ``width``
(line width in pixels; default from the image size) and ``alpha`` (0..1 opacity; default 1).
Coordinates are pixels, inclusive, ``0 <= x <= width-1`` and ``0 <= y <= height-1``; boxes are
drawn inside their bounds. Every problem is a one-line :class:`DataError` naming the prompt, the
field and what was expected.
"""
from __future__ import annotations

import math
import zlib
from numbers import Real

import numpy as np
from PIL import Image, ImageDraw

from ..errors import DataError

TYPES = ("bbox", "ellipse", "arrow", "scribble", "point", "mask")

# the words the text uses for each shape
NOUNS = {"bbox": "rectangle", "ellipse": "ellipse", "arrow": "arrow", "scribble": "scribble",
         "point": "point", "mask": "contour"}

# named colours a prompt may use (and random prompts draw from)
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (255, 0, 0),
    "green": (0, 200, 0),
    "blue": (0, 0, 255),
    "yellow": (255, 255, 0),
    "orange": (255, 140, 0),
    "purple": (140, 0, 200),
    "pink": (255, 105, 180),
    "cyan": (0, 255, 255),
    "white": (255, 255, 255),
    "black": (0, 0, 0),
}

_COORDS = {"bbox": ("bbox",), "ellipse": ("bbox",), "arrow": ("start", "end"), "scribble": ("points",),
           "point": ("point",), "mask": ("points",)}
_STYLE = ("color", "width", "alpha")
_MIN_POINTS = {"scribble": 2, "mask": 3}


# validation ----------------------------------------------------------------------------------
def _fail(where: str, field: str, problem: str) -> DataError:
    return DataError(f"{where}: {field}: {problem}")


def _number(value, where: str, field: str, expected: str) -> float:
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
        raise _fail(where, field, f"{value!r} is not a number (expected {expected})")
    return float(value)


def _xy(value, size, where: str, field: str) -> tuple[float, float]:
    w, h = size
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise _fail(where, field, f"{value!r} is not a point (expected [x, y])")
    x = _number(value[0], where, field, "[x, y] numbers")
    y = _number(value[1], where, field, "[x, y] numbers")
    _inside(x, "x", w, size, where, field)
    _inside(y, "y", h, size, where, field)
    return x, y


def _inside(v: float, name: str, extent: int, size, where: str, field: str) -> None:
    if not 0 <= v <= extent - 1:
        raise _fail(where, field, f"{name}={v:g} is outside the {size[0]}x{size[1]} image "
                                  f"(expected 0 <= {name} <= {extent - 1})")


def _box(value, size, where: str, field: str = "bbox") -> tuple[float, float, float, float]:
    if not isinstance(value, (list, tuple)) or len(value) != 4:
        raise _fail(where, field, f"{value!r} is not a box (expected [x1, y1, x2, y2])")
    x1, y1, x2, y2 = (_number(v, where, field, "[x1, y1, x2, y2] numbers") for v in value)
    for name, v, extent in (("x1", x1, size[0]), ("y1", y1, size[1]), ("x2", x2, size[0]), ("y2", y2, size[1])):
        _inside(v, name, extent, size, where, field)
    if x2 <= x1:
        raise _fail(where, field, f"x2={x2:g} is not right of x1={x1:g} (expected x2 > x1)")
    if y2 <= y1:
        raise _fail(where, field, f"y2={y2:g} is not below y1={y1:g} (expected y2 > y1)")
    return x1, y1, x2, y2


def parse_color(value, where: str = "visual prompt") -> tuple[int, int, int]:
    """A palette name or ``#rrggbb`` -> (r, g, b)."""
    if isinstance(value, str):
        name = value.strip().lower()
        if name in PALETTE:
            return PALETTE[name]
        if len(name) == 7 and name[0] == "#":
            try:
                return tuple(int(name[i:i + 2], 16) for i in (1, 3, 5))
            except ValueError:
                pass
    raise _fail(where, "color", f"{value!r} is not a known colour "
                                f"(expected #rrggbb or one of {', '.join(PALETTE)})")


def default_width(size) -> int:
    """Line width for an image of this (width, height) when a prompt gives none."""
    return max(2, round(min(size) / 100))


def validate_prompt(prompt, size, where: str = "visual prompt 0") -> dict:
    """Check one prompt against an image of ``size`` (width, height); return it with defaults filled.

    ``where`` starts every error message (the prompt's index, or the command-line flag).
    """
    if not isinstance(prompt, dict):
        raise DataError(f"{where}: is a {type(prompt).__name__} (expected an object with a 'type')")
    kind = prompt.get("type")
    if kind not in TYPES:
        raise _fail(where, "type", f"{kind!r} is not a visual prompt type (expected one of {', '.join(TYPES)})")
    allowed = ("type", *_COORDS[kind], *_STYLE, *(("radius",) if kind == "point" else ()))
    for key in prompt:
        if key not in allowed:
            raise _fail(where, str(key), f"unknown field for a {kind} prompt (expected one of {', '.join(allowed)})")
    for key in _COORDS[kind]:
        if key not in prompt:
            raise _fail(where, key, f"missing (a {kind} prompt needs {' and '.join(_COORDS[kind])})")
    out = {"type": kind}
    if kind in ("bbox", "ellipse"):
        out["bbox"] = _box(prompt["bbox"], size, where)
    elif kind == "arrow":
        out["start"] = _xy(prompt["start"], size, where, "start")
        out["end"] = _xy(prompt["end"], size, where, "end")
        if out["start"] == out["end"]:
            raise _fail(where, "end", "is the same point as start (expected an arrow of non-zero length)")
    elif kind == "point":
        out["point"] = _xy(prompt["point"], size, where, "point")
    else:
        points = prompt["points"]
        need = _MIN_POINTS[kind]
        if not isinstance(points, (list, tuple)) or len(points) < need:
            n = len(points) if isinstance(points, (list, tuple)) else type(points).__name__
            raise _fail(where, "points", f"has {n} point(s) (expected a list of at least {need} [x, y] points)")
        out["points"] = [_xy(p, size, where, f"points[{i}]") for i, p in enumerate(points)]
    color = prompt.get("color", "red")
    out["rgb"] = parse_color(color, where)
    out["color"] = color
    width = prompt.get("width", default_width(size))
    if isinstance(width, bool) or not isinstance(width, int) or width < 1:
        raise _fail(where, "width", f"{width!r} is not a line width (expected an integer >= 1 pixels)")
    out["width"] = width
    alpha = _number(prompt.get("alpha", 1.0), where, "alpha", "a number from 0 to 1")
    if not 0 <= alpha <= 1:
        raise _fail(where, "alpha", f"{alpha:g} is out of range (expected 0 <= alpha <= 1)")
    out["alpha"] = alpha
    if kind == "point":
        radius = prompt.get("radius", max(2, width))
        if isinstance(radius, bool) or not isinstance(radius, int) or radius < 1:
            raise _fail(where, "radius", f"{radius!r} is not a radius (expected an integer >= 1 pixels)")
        out["radius"] = radius
    return out


def validate_prompts(prompts, size) -> list[dict]:
    """Check a list of prompts (errors name the index); return them with defaults filled."""
    if not isinstance(prompts, (list, tuple)):
        raise DataError(f"visual_prompts: is a {type(prompts).__name__} (expected a list of prompt objects)")
    return [validate_prompt(p, size, f"visual prompt {i}") for i, p in enumerate(prompts)]


# drawing -------------------------------------------------------------------------------------
def shape_mask(prompt: dict, size) -> Image.Image:
    """The pixels one validated prompt covers, as an ``L`` image (255 inside, 0 elsewhere)."""
    mask = Image.new("L", tuple(size), 0)
    pen = ImageDraw.Draw(mask)
    kind, width = prompt["type"], prompt["width"]
    if kind == "bbox":
        pen.rectangle(prompt["bbox"], outline=255, width=width)
    elif kind == "ellipse":
        pen.ellipse(prompt["bbox"], outline=255, width=width)
    elif kind == "arrow":
        pen.line([prompt["start"], prompt["end"]], fill=255, width=width)
        pen.polygon(_arrow_head(prompt["start"], prompt["end"], width), fill=255)
    elif kind == "scribble":
        pen.line(prompt["points"], fill=255, width=width, joint="curve")
    elif kind == "point":
        (x, y), r = prompt["point"], prompt["radius"]
        pen.ellipse([x - r, y - r, x + r, y + r], fill=255)
    elif kind == "mask":
        pen.polygon(prompt["points"], outline=255, width=width)
    return mask


def _arrow_head(start, end, width: int) -> list[tuple[float, float]]:
    """Triangle with its tip at ``end``, pointing along start -> end."""
    (x1, y1), (x2, y2) = start, end
    length = math.hypot(x2 - x1, y2 - y1)
    ux, uy = (x2 - x1) / length, (y2 - y1) / length
    head = min(max(6.0, 4.0 * width), 0.6 * length) if length > 2 else length
    half = 0.6 * head
    bx, by = x2 - ux * head, y2 - uy * head
    return [(x2, y2), (bx - uy * half, by + ux * half), (bx + uy * half, by - ux * half)]


def draw_prompts(image: Image.Image, prompts) -> Image.Image:
    """A new image with ``prompts`` alpha-blended on top, in order; ``image`` is left untouched.

    The result is RGBA when the input is RGBA, else RGB.
    """
    checked = validate_prompts(prompts, image.size)
    out = image.convert("RGBA")  # always a copy
    for p in checked:
        coverage = shape_mask(p, image.size)
        opacity = round(255 * p["alpha"])
        layer = Image.new("RGBA", image.size, (*p["rgb"], 0))
        layer.putalpha(coverage.point(lambda v: opacity if v else 0))
        out = Image.alpha_composite(out, layer)
    return out if image.mode == "RGBA" else out.convert("RGB")


# text ----------------------------------------------------------------------------------------
def color_name(color) -> str:
    """The palette name of a colour; ``#rrggbb`` gets the nearest palette colour's name."""
    rgb = parse_color(color)
    if isinstance(color, str) and color.strip().lower() in PALETTE:
        return color.strip().lower()
    return min(PALETTE, key=lambda n: sum((a - b) ** 2 for a, b in zip(PALETTE[n], rgb)))


def describe(prompt: dict) -> str:
    """The phrase the text uses for a prompt: ``"the red rectangle"``, ``"the blue arrow"``..."""
    kind = prompt.get("type") if isinstance(prompt, dict) else None
    if kind not in TYPES:
        raise DataError(f"visual prompt: type: {kind!r} is not a visual prompt type "
                        f"(expected one of {', '.join(TYPES)})")
    return f"the {color_name(prompt.get('color', 'red'))} {NOUNS[kind]}"


# random prompts (training augmentation, as ViP-LLaVA draws them) ------------------------------
MIN_RANDOM_SIDE = 8


def seed_for(item_id: str) -> int:
    """A stable seed from a sample id (same prompt for the same sample in every run)."""
    return zlib.crc32(str(item_id).encode("utf-8"))


def _random_region(rng, w: int, h: int, target_box) -> tuple:
    """The region a random prompt marks: ``target_box``, else a random box of 15-60% of each side."""
    if w < MIN_RANDOM_SIDE or h < MIN_RANDOM_SIDE:
        raise DataError(f"random visual prompt: the {w}x{h} image is too small "
                        f"(expected at least {MIN_RANDOM_SIDE}x{MIN_RANDOM_SIDE} pixels)")
    if target_box is not None:
        return _box(target_box, (w, h), "random visual prompt", "target_box")
    bw, bh = rng.uniform(0.15, 0.6) * (w - 1), rng.uniform(0.15, 0.6) * (h - 1)
    x1, y1 = rng.uniform(0, w - 1 - bw), rng.uniform(0, h - 1 - bh)
    return (x1, y1, x1 + bw, y1 + bh)


def random_prompt(image_size, rng=None, target_box=None) -> dict:
    """One random prompt of a random type, palette colour, width and alpha inside the image.

    ``image_size`` is (width, height); ``rng`` a ``numpy.random.Generator`` or an int seed.
    ``target_box`` [x1, y1, x2, y2] makes the prompt mark that region (a box around it, an arrow
    pointing at it, a dot or scribble inside it...); without it a random region is marked.
    """
    if not isinstance(rng, np.random.Generator):
        rng = np.random.default_rng(rng)
    w, h = int(image_size[0]), int(image_size[1])
    box = _random_region(rng, w, h, target_box)
    kind = str(rng.choice(TYPES))
    prompt = {
        "type": kind,
        "color": str(rng.choice(list(PALETTE))),
        "width": int(rng.integers(1, max(1, min(w, h) // 60) + 2)),
        "alpha": round(float(rng.uniform(0.6, 1.0)), 2),
    }
    x1, y1, x2, y2 = box
    cx, cy, hw, hh = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) / 2, (y2 - y1) / 2

    def clip(x, y):
        return [int(min(max(round(x), 0), w - 1)), int(min(max(round(y), 0), h - 1))]

    def inside():  # a point in the central part of the region
        return clip(cx + rng.uniform(-0.5, 0.5) * hw, cy + rng.uniform(-0.5, 0.5) * hh)

    if kind in ("bbox", "ellipse"):
        grow = 0.0 if kind == "bbox" else 0.1  # an ellipse around a box needs a little room
        a, b = clip(math.floor(x1 - grow * hw), math.floor(y1 - grow * hh))
        c, d = clip(math.ceil(x2 + grow * hw), math.ceil(y2 + grow * hh))
        prompt["bbox"] = [a, b, max(c, a + 1), max(d, b + 1)]
    elif kind == "arrow":
        end = inside()
        angle = rng.uniform(0, 2 * math.pi)
        reach = max(hw, hh) + rng.uniform(0.1, 0.3) * min(w, h)
        start = clip(end[0] + reach * math.cos(angle), end[1] + reach * math.sin(angle))
        if start == end:  # clipped onto the tip: come from the far side instead
            start = clip(end[0] - reach * math.cos(angle), end[1] - reach * math.sin(angle))
        prompt.update(start=start, end=end)
    elif kind == "scribble":
        n = int(rng.integers(3, 8))
        prompt["points"] = [inside() for _ in range(n)]
    elif kind == "point":
        prompt["point"] = inside()
    else:  # mask contour: a star-shaped polygon filling most of the region
        n = int(rng.integers(5, 11))
        angles = np.sort(rng.uniform(0, 2 * math.pi, n))
        radii = rng.uniform(0.6, 1.0, n)
        prompt["points"] = [clip(cx + r * hw * math.cos(t), cy + r * hh * math.sin(t))
                            for t, r in zip(angles, radii)]
    validate_prompt(prompt, (w, h), "random visual prompt")  # a failure here is a bug
    return prompt
