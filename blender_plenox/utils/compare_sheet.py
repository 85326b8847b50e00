"""The demo's comparison sheet: one row per test view, one labelled column per renderer, the PSNR
against ground truth under each image (numpy and, for the text, Pillow; no bpy).

Blender's Python has no font renderer, but the trainer's Python has Pillow (an imageio dependency),
so the add-on runs this file as a script with that interpreter:

    python compare_sheet.py SPEC.json OUT.png

SPEC: {"columns": ["ground truth", ...], "rows": [{"label": "test view 0",
       "images": [path or null, ...], "captions": ["29.81 dB", ...]}, ...]}

The file imports nothing from the add-on, so it runs from its path with any Python that has numpy
and imageio. Without Pillow the sheet is laid out the same, with blank label and caption strips.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

PAD = 4  # pixels between cells and around the sheet
LABEL_H = 18  # column label strip above the first row
CAPTION_H = 16  # PSNR strip under each image
BACKGROUND = 255
TEXT = (0, 0, 0)
MISSING = 200  # grey cell where a renderer gave no image


@dataclass(frozen=True)
class Layout:
    """Pixel positions on the sheet: image cells (top, left), label and caption strips (top, left)."""

    width: int
    height: int
    cell_h: int
    cell_w: int
    rows: int
    cols: int

    def image_origin(self, row: int, col: int) -> tuple[int, int]:
        top = PAD + LABEL_H + row * (self.cell_h + CAPTION_H + PAD)
        return top, PAD + col * (self.cell_w + PAD)

    def label_origin(self, col: int) -> tuple[int, int]:
        return PAD, PAD + col * (self.cell_w + PAD)

    def caption_origin(self, row: int, col: int) -> tuple[int, int]:
        top, left = self.image_origin(row, col)
        return top + self.cell_h, left


def layout(rows: int, cols: int, cell_h: int, cell_w: int) -> Layout:
    if rows <= 0 or cols <= 0 or cell_h <= 0 or cell_w <= 0:
        raise ValueError("a sheet needs at least one row, one column and a non-empty cell")
    width = PAD + cols * (cell_w + PAD)
    height = PAD + LABEL_H + rows * (cell_h + CAPTION_H + PAD)
    return Layout(width, height, cell_h, cell_w, rows, cols)


def to_rgb8(img: npt.NDArray[Any]) -> npt.NDArray[np.uint8]:
    """8-bit RGB of an image file's array (grey, RGBA over white, 16-bit or float)."""
    a = np.asarray(img)
    if a.dtype == np.uint16:
        a = a.astype(np.float64) / 65535.0
    elif a.dtype.kind == "f":
        a = a.astype(np.float64)
    else:
        a = a.astype(np.float64) / 255.0
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    if a.shape[2] == 4:  # straight alpha over the demo's white background
        a = a[..., :3] * a[..., 3:] + (1.0 - a[..., 3:])
    elif a.shape[2] == 2:
        a = np.repeat(a[..., :1] * a[..., 1:] + (1.0 - a[..., 1:]), 3, axis=2)
    return (np.clip(a[..., :3], 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def compose(
    images: list[list[npt.NDArray[np.uint8] | None]],
    columns: list[str],
    captions: list[list[str]],
    row_labels: list[str] | None = None,
) -> npt.NDArray[np.uint8]:
    """The sheet as an (H, W, 3) uint8 array. Cells are the size of the largest image; smaller ones
    sit at their cell's top-left (the views are shown at their own resolution, never resampled)."""
    shapes = [im.shape[:2] for row in images for im in row if im is not None]
    if not shapes:
        raise ValueError("no images to lay out")
    rows, cols = len(images), len(columns)
    if any(len(row) != cols for row in images) or len(captions) != rows or any(len(c) != cols for c in captions):
        raise ValueError("every row needs one image (or None) and one caption per column")
    cell_h, cell_w = max(s[0] for s in shapes), max(s[1] for s in shapes)
    lay = layout(rows, cols, cell_h, cell_w)
    sheet = np.full((lay.height, lay.width, 3), BACKGROUND, np.uint8)
    for r, row in enumerate(images):
        for c, im in enumerate(row):
            top, left = lay.image_origin(r, c)
            if im is None:
                sheet[top : top + cell_h, left : left + cell_w] = MISSING
            else:
                sheet[top : top + im.shape[0], left : left + im.shape[1]] = im[..., :3]
    texts: list[tuple[tuple[int, int], str, int]] = [
        (lay.label_origin(c), name, LABEL_H) for c, name in enumerate(columns)
    ]
    for r in range(rows):
        for c in range(cols):
            text = captions[r][c]
            if c == 0 and row_labels:  # the first column (ground truth) has no PSNR: name the view
                text = row_labels[r] if not text else f"{row_labels[r]} {text}"
            texts.append((lay.caption_origin(r, c), text, CAPTION_H))
    return draw_texts(sheet, texts, cell_w)


def draw_texts(
    sheet: npt.NDArray[np.uint8], texts: list[tuple[tuple[int, int], str, int]], max_w: int
) -> npt.NDArray[np.uint8]:
    """Writes each (top, left), text, strip height with Pillow's default font, shrunk to fit max_w."""
    try:
        from PIL import Image, ImageDraw, ImageFont
    except ImportError:
        return sheet
    out = sheet.copy()
    for (top, left), text, strip_h in texts:
        if not text:
            continue
        # drawn on a strip of the cell's size, so text too long even at the smallest size is cut
        # at the cell's edge instead of running into the next column
        strip = Image.new("RGB", (max_w, strip_h), (BACKGROUND,) * 3)
        draw = ImageDraw.Draw(strip)
        size = strip_h - 4
        font = _font(ImageFont, size)
        while size > 6 and draw.textlength(text, font=font) > max_w - 2:
            size -= 1
            font = _font(ImageFont, size)
        draw.text((1, 1), text, fill=TEXT, font=font)
        h = min(strip_h, out.shape[0] - top)
        w = min(max_w, out.shape[1] - left)
        out[top : top + h, left : left + w] = np.asarray(strip, dtype=np.uint8)[:h, :w]
    return out


def _font(image_font: Any, size: int) -> Any:
    try:  # Pillow >= 10.1 scales its built-in font when FreeType is there
        return image_font.load_default(size=size)
    except TypeError:
        return image_font.load_default()


def psnr_caption(value: float | None) -> str:
    if value is None:
        return ""
    return "PSNR inf" if value == float("inf") else f"PSNR {value:.2f} dB"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python compare_sheet.py SPEC.json OUT.png", file=sys.stderr)
        return 2
    import imageio.v3 as iio

    with open(args[0], encoding="utf-8") as f:
        spec = json.load(f)
    images = [[to_rgb8(iio.imread(p)) if p else None for p in row["images"]] for row in spec["rows"]]
    sheet = compose(
        images,
        list(spec["columns"]),
        [list(row["captions"]) for row in spec["rows"]],
        [str(row.get("label", "")) for row in spec["rows"]],
    )
    iio.imwrite(args[1], sheet)
    return 0


if __name__ == "__main__":
    sys.exit(main())
