"""PNG montages of middle slices: inputs | synthetic | truth | |error| | uncertainty."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from MRSynthLib.files.atomic import atomic_path
from MRSynthLib.files.imageio import image_to_array

if TYPE_CHECKING:  # pragma: no cover
    import SimpleITK as sitk


def _axial_slice(image: sitk.Image, index: int | None = None) -> np.ndarray:
    """Axial slice ``(y, x)`` of an LPS-reoriented copy, anterior up, patient left on the right (radiological), at ``index`` (default middle)."""
    import SimpleITK as sitk

    array = image_to_array(sitk.DICOMOrient(image, "LPS"))
    z = array.shape[0] // 2 if index is None else index
    return array[z]


def _to_uint8(panel: np.ndarray, window: tuple[float, float] | None) -> np.ndarray:
    low, high = window if window else (float(np.percentile(panel, 0.5)), float(np.percentile(panel, 99.5)))
    return (np.clip((panel - low) / max(high - low, 1e-6), 0, 1) * 255).astype(np.uint8)


def save_montage(
    rows: list[list[tuple[str, sitk.Image | None, tuple[float, float] | None]]],
    path: str | os.PathLike,
    overwrite: bool = False,
    slice_fraction: float = 0.5,
) -> Path:
    """Write a grid of labelled axial slices.

    Args:
        rows: each row is a list of ``(title, image or None, window)``; ``window=None`` → robust auto window.
            ``None`` images leave an empty tile. Each row is sliced at ``slice_fraction`` of its first image's depth.
    """
    from PIL import Image, ImageDraw

    tiles_rows = []
    for row in rows:
        first = next(img for _, img, _ in row if img is not None)
        depth = first.GetSize()[2]
        index = int(round(slice_fraction * (depth - 1)))
        tiles = []
        for title, image, window in row:
            if image is None:
                tiles.append((title, None))
                continue
            tiles.append((title, _to_uint8(_axial_slice(image, index), window)))
        tiles_rows.append(tiles)
    tw = th = 200  # every slice is fitted into the same box, aspect ratio kept
    header = 16
    columns = max(len(r) for r in tiles_rows)
    canvas = Image.new("L", (columns * (tw + 4), len(tiles_rows) * (th + header + 4)), 0)
    draw = ImageDraw.Draw(canvas)
    for r, row in enumerate(tiles_rows):
        for c, (title, tile) in enumerate(row):
            x, y = c * (tw + 4), r * (th + header + 4)
            draw.text((x + 2, y + 2), title, fill=255)
            if tile is not None:
                scale = min(tw / tile.shape[1], th / tile.shape[0])
                size = (max(1, round(tile.shape[1] * scale)), max(1, round(tile.shape[0] * scale)))
                img = Image.fromarray(tile).resize(size, Image.BILINEAR)
                canvas.paste(img, (x + (tw - size[0]) // 2, y + header + (th - size[1]) // 2))
    with atomic_path(path, overwrite) as tmp:
        canvas.save(tmp, format="PNG")
    return Path(path)
