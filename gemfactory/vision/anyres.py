"""LLaVA-NeXT any-resolution tiling, available to every tower whose tokens form a square grid.

An image is resized (aspect kept) into the best-fitting grid resolution of ``anyres_grid``
(pinpoints in pixels, ``[height, width]``), padded, and cut into tower-sized tiles; a
downscaled whole view comes first. After the connector, the tile features are stitched back
into one feature map, the rows/columns that only cover padding are dropped ("unpadding") and a
learned newline vector closes every row. The token count depends only on the image size, so
the data layer knows it before the forward pass.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from PIL import Image

from ..errors import ConfigError


@dataclass(frozen=True)
class AnyResLayout:
    tile: int  # tower input size in pixels
    grid: int  # tokens per tile side
    pinpoints: tuple[tuple[int, int], ...]  # allowed (height, width) resolutions, multiples of tile

    @classmethod
    def from_options(cls, pinpoints, tile: int, num_tokens: int, key="model.vision.options.anyres_grid"):
        grid = round(num_tokens**0.5)
        if grid * grid != num_tokens:
            raise ConfigError(f"{key}: needs a square token grid per tile, the tower gives {num_tokens} tokens "
                              "(use select_feature: patch)")
        points = []
        for p in pinpoints:
            if (not isinstance(p, (list, tuple)) or len(p) != 2
                    or not all(isinstance(v, int) and v > 0 and v % tile == 0 for v in p)):
                raise ConfigError(f"{key}: {p!r} is not a [height, width] pair of multiples of the tile size {tile}")
            points.append((int(p[0]), int(p[1])))
        if not points:
            raise ConfigError(f"{key}: give at least one [height, width] resolution")
        return cls(tile, grid, tuple(points))

    # geometry ------------------------------------------------------------------------------
    def best_resolution(self, size_hw) -> tuple[int, int]:
        from transformers.image_processing_utils import select_best_resolution

        return select_best_resolution(tuple(int(v) for v in size_hw), list(self.pinpoints))

    def grid_shape(self, size_hw) -> tuple[int, int]:
        h, w = self.best_resolution(size_hw)
        return h // self.tile, w // self.tile

    def num_views(self, size_hw) -> int:
        rows, cols = self.grid_shape(size_hw)
        return 1 + rows * cols

    def unpadded_shape(self, size_hw) -> tuple[int, int]:
        """Token rows and columns of the stitched map that cover the image, not its padding."""
        rows, cols = self.grid_shape(size_hw)
        cur_h, cur_w = rows * self.grid, cols * self.grid
        orig_h, orig_w = (int(v) for v in size_hw)
        if orig_w / orig_h > cur_w / cur_h:
            new_h = int(round(orig_h * (cur_w / orig_w), 7))
            pad = (cur_h - new_h) // 2
            return cur_h - 2 * pad, cur_w
        new_w = int(round(orig_w * (cur_h / orig_h), 7))
        pad = (cur_w - new_w) // 2
        return cur_h, cur_w - 2 * pad

    def num_tokens(self, size_hw) -> int:
        h, w = self.unpadded_shape(size_hw)
        return self.grid * self.grid + h * (w + 1)

    # pixels and features -------------------------------------------------------------------
    def views(self, img: Image.Image, fill) -> list[Image.Image]:
        """The whole image at tile size, then the tiles of its best-fit resolution, row by row."""
        target_h, target_w = self.best_resolution((img.height, img.width))
        scale = min(target_w / img.width, target_h / img.height)
        new_w, new_h = max(1, int(img.width * scale)), max(1, int(img.height * scale))
        canvas = Image.new("RGB", (target_w, target_h), fill)
        canvas.paste(img.resize((new_w, new_h), Image.BICUBIC), ((target_w - new_w) // 2, (target_h - new_h) // 2))
        base = expand_to_square(img, fill).resize((self.tile, self.tile), Image.BICUBIC)
        tiles = [canvas.crop((x, y, x + self.tile, y + self.tile))
                 for y in range(0, target_h, self.tile) for x in range(0, target_w, self.tile)]
        return [base, *tiles]

    def pack(self, feats: torch.Tensor, size_hw, newline: torch.Tensor) -> torch.Tensor:
        """[views, grid*grid, D] features of one image -> [num_tokens(size), D]."""
        rows, cols = self.grid_shape(size_hw)
        g, d = self.grid, feats.shape[-1]
        stitched = feats[1:].reshape(rows, cols, g, g, d).permute(0, 2, 1, 3, 4).reshape(rows * g, cols * g, d)
        h, w = self.unpadded_shape(size_hw)
        top, left = (rows * g - h) // 2, (cols * g - w) // 2
        stitched = stitched[top:top + h, left:left + w]
        stitched = torch.cat([stitched, newline.to(stitched.dtype).expand(h, 1, d)], dim=1)
        return torch.cat([feats[0], stitched.reshape(h * (w + 1), d)], dim=0)


def expand_to_square(img: Image.Image, fill: tuple[int, int, int]) -> Image.Image:
    """Pad to a square canvas, image centred (LLaVA-1.5's ``pad`` aspect mode)."""
    w, h = img.size
    if w == h:
        return img
    side = max(w, h)
    canvas = Image.new(img.mode, (side, side), fill)
    canvas.paste(img, ((side - w) // 2, (side - h) // 2))
    return canvas
