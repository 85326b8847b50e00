"""The comparison sheet's layout: sizes, where each view lands, labels and PSNRs in their strips."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from blender_plenox.utils import compare_sheet as cs
from blender_plenox.utils.compare_sheet import CAPTION_H, LABEL_H, PAD, compose, layout, psnr_caption, to_rgb8

COLUMNS = ["ground truth", "trainer full", "trainer DC", "Cycles", "EEVEE"]


def solid(h: int, w: int, rgb) -> np.ndarray:
    return np.broadcast_to(np.asarray(rgb, np.uint8), (h, w, 3)).copy()


def ink(region: np.ndarray) -> int:
    """Pixels darker than the white background (text)."""
    return int(np.count_nonzero(region.min(axis=2) < 128))


def test_layout_size_for_rows_and_columns():
    lay = layout(3, 5, 100, 120)
    assert lay.width == PAD + 5 * (120 + PAD)
    assert lay.height == PAD + LABEL_H + 3 * (100 + CAPTION_H + PAD)
    # cells do not overlap and stay inside the sheet
    top, left = lay.image_origin(2, 4)
    assert top + 100 + CAPTION_H <= lay.height and left + 120 <= lay.width
    assert lay.image_origin(0, 1)[1] - lay.image_origin(0, 0)[1] == 120 + PAD


def test_each_image_lands_at_full_resolution_in_its_cell():
    colours = [[(10 * r + c, 200 - c, 40 * r) for c in range(5)] for r in range(2)]
    images = [[solid(60, 80, colours[r][c]) for c in range(5)] for r in range(2)]
    captions = [["", "31.00 dB", "28.00 dB", "30.50 dB", "29.90 dB"] for _ in range(2)]
    sheet = compose(images, COLUMNS, captions, ["view 0", "view 3"])
    lay = layout(2, 5, 60, 80)
    assert sheet.shape == (lay.height, lay.width, 3) and sheet.dtype == np.uint8
    for r in range(2):
        for c in range(5):
            top, left = lay.image_origin(r, c)
            assert np.all(sheet[top : top + 60, left : left + 80] == colours[r][c])


def test_labels_over_columns_and_psnr_under_images():
    pytest.importorskip("PIL")
    images = [[solid(50, 100, (255, 255, 255)) for _ in range(5)]]
    captions = [["", "31.00 dB", "", "30.50 dB", "29.90 dB"]]
    sheet = compose(images, COLUMNS, captions)
    lay = layout(1, 5, 50, 100)
    for c in range(5):
        top, left = lay.label_origin(c)
        assert ink(sheet[top : top + LABEL_H, left : left + 100]) > 10, COLUMNS[c]
        top, left = lay.caption_origin(0, c)
        strip = sheet[top : top + CAPTION_H, left : left + 100]
        assert (ink(strip) > 10) == bool(captions[0][c])
    # text stays inside its own column: nothing in the gaps between cells
    for c in range(4):
        gap_left = lay.image_origin(0, c)[1] + 100
        assert ink(sheet[:, gap_left : gap_left + PAD]) == 0


def test_long_text_is_shrunk_to_the_cell():
    pytest.importorskip("PIL")
    images = [[solid(40, 40, (255, 255, 255))]]
    sheet = compose(images, ["a very long column label"], [["12.34 dB"]])
    lay = layout(1, 1, 40, 40)
    assert ink(sheet[:, lay.width - PAD :]) == 0


def test_missing_image_is_a_grey_cell_and_sizes_follow_the_largest():
    images = [[solid(30, 40, (0, 0, 0)), None], [solid(20, 20, (0, 0, 0)), solid(30, 40, (0, 0, 0))]]
    sheet = compose(images, ["a", "b"], [["", ""], ["", ""]])
    lay = layout(2, 2, 30, 40)
    top, left = lay.image_origin(0, 1)
    assert np.all(sheet[top : top + 30, left : left + 40] == cs.MISSING)
    top, left = lay.image_origin(1, 0)  # a smaller image keeps its size, top-left in its cell
    assert np.all(sheet[top : top + 20, left : left + 20] == 0)
    assert np.all(sheet[top + 20 : top + 30, left : left + 40] == cs.BACKGROUND)


def test_mismatched_rows_are_refused():
    with pytest.raises(ValueError):
        compose([[solid(4, 4, (0, 0, 0))]], ["a", "b"], [["", ""]])
    with pytest.raises(ValueError):
        compose([[None]], ["a"], [[""]])


def test_image_conversions():
    grey16 = np.full((2, 2), 65535, np.uint16)
    assert np.all(to_rgb8(grey16) == 255)
    rgba = np.zeros((1, 1, 4), np.uint8)  # transparent black over white
    assert np.all(to_rgb8(rgba) == 255)
    assert np.all(to_rgb8(np.full((1, 1, 3), 0.5, np.float32)) == 128)
    assert psnr_caption(29.814) == "PSNR 29.81 dB" and psnr_caption(None) == ""


def test_runs_as_a_script_from_its_path(tmp_path: Path):
    import imageio.v3 as iio

    paths = []
    for i, rgb in enumerate([(255, 0, 0), (0, 255, 0)]):
        p = tmp_path / f"im{i}.png"
        iio.imwrite(p, solid(30, 30, rgb))
        paths.append(str(p))
    spec = {"columns": ["ground truth", "Cycles"], "rows": [{"label": "view 0", "images": paths,
                                                            "captions": ["", "30.00 dB"]}]}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    out = tmp_path / "sheet.png"
    subprocess.run([sys.executable, cs.__file__, str(tmp_path / "spec.json"), str(out)], check=True,
                   cwd=tmp_path)
    sheet = iio.imread(out)
    lay = layout(1, 2, 30, 30)
    top, left = lay.image_origin(0, 1)
    assert sheet.shape == (lay.height, lay.width, 3)
    assert np.all(sheet[top : top + 30, left : left + 30] == (0, 255, 0))
