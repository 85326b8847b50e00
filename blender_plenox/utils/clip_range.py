"""Clip range for a camera that looks at a scene box, from plain numbers (no bpy).

A camera rebuilt from a dataset view (the demo's comparison, a turntable) must not keep Blender's
default clip start of 0.1 m: a 2 cm object seen from 10 cm lies wholly in front of it and renders as
an empty background (issue 9: 11.8 dB where the import itself reaches 29.8 dB). Blender clips at
planes of equal view depth, so the range comes from the box corners' depths along the view axis.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

START_FRACTION = 0.9  # clip start at 90 % of the nearest depth: just in front of the box
END_FRACTION = 1.1  # clip end 10 % beyond the farthest depth
# Lower bound of start / end. Cycles traces rays and cares little, but EEVEE and the viewport keep a
# depth buffer whose precision falls with end / start; 1e-4 keeps 24-bit depth usable. A camera inside
# the box (nearest depth <= 0) gets this much, which only clips a sliver right in front of the lens.
MIN_START_RATIO = 1e-4
BLENDER_DEFAULT = (0.1, 100.0)  # a camera that does not see the box keeps Blender's own range


def box_corners(box: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """The 8 corners (8, 3) of [[xmin, ymin, zmin], [xmax, ymax, zmax]]."""
    b = np.asarray(box, dtype=np.float64).reshape(2, 3)
    if np.any(b[1] < b[0]):
        raise ValueError(f"box max must not be below its min: {b.tolist()}")
    pick = np.array([[(i >> k) & 1 for k in range(3)] for i in range(8)])
    return np.where(pick == 1, b[1], b[0])


def view_depth_range(c2w: npt.ArrayLike, box: npt.ArrayLike) -> tuple[float, float]:
    """Nearest and farthest view depth (along the camera's −z axis, which may carry scale) of the box."""
    m = np.asarray(c2w, dtype=np.float64).reshape(4, 4)
    forward = -m[:3, 2] / np.linalg.norm(m[:3, 2])
    depths = (box_corners(box) - m[:3, 3]) @ forward
    return float(depths.min()), float(depths.max())


def clip_range(
    c2w: npt.ArrayLike,
    box: npt.ArrayLike | None,
    near: float | None = None,
    far: float | None = None,
) -> tuple[float, float]:
    """(clip_start, clip_end) for a camera-to-world pose looking at `box`.

    `near` / `far`: the dataset camera's own range where its file gives one (taken as is when
    positive and ordered); otherwise start lies just in front of the box's nearest point (never <= 0,
    never below MIN_START_RATIO of the end) and end just beyond its farthest.
    """
    start, end = BLENDER_DEFAULT
    if box is not None:
        lo, hi = view_depth_range(c2w, box)
        if hi > 0:
            end = END_FRACTION * hi
            start = max(START_FRACTION * lo, MIN_START_RATIO * end)
    if far is not None and far > 0:
        end = float(far)
    if near is not None and near > 0:
        start = float(near)
    if end <= start:  # a file's near or far that contradicts the box: the file's value wins
        if near is not None and near > 0:
            end = 10.0 * start
        else:
            start = MIN_START_RATIO * end
    return start, end


def frame_near_far(meta: Mapping[str, Any], frame: Mapping[str, Any]) -> tuple[float | None, float | None]:
    """A dataset camera's own near / far (per-frame over file-level keys `near`, `far`), if given."""

    def pick(key: str) -> float | None:
        value = frame.get(key, meta.get(key))
        try:
            return float(value) if value is not None else None
        except (TypeError, ValueError):
            return None

    return pick("near"), pick("far")
