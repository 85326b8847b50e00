"""Fills the empty space that a dense block's surface encloses, so a surface mesh is the outer one.

A trained grid is often a hollow shell: no camera sees inside a solid object, so no ray constrains
the density there and pruning empties it. Its level set then has an inner wall a few voxels behind
the outer surface, plus bubbles; both are invisible from outside and pull a mesh's vertices away from
the true surface. Empty voxels (below the level) that no path of empty voxels (6-neighbourhood)
joins to the block's boundary are therefore raised above the level before the surface is extracted.

Connectivity by sweeps: along one axis, a run of consecutive empty voxels is outside as soon as one
of its voxels is; sweeping x, y, z in turn until nothing changes reaches every empty voxel joined
to the boundary (a path needs one round per change of direction, so a handful of rounds), each
sweep a cumulative sum and a bincount over the block: no Python loop over voxels.
"""

from __future__ import annotations

import numpy as np


def _sweep(empty: np.ndarray, outside: np.ndarray, axis: int) -> np.ndarray:
    """Spreads `outside` along `axis` through every run of `empty` voxels it touches."""
    e = np.moveaxis(empty, axis, -1)
    o = np.moveaxis(outside, axis, -1)
    n = e.shape[-1]
    # a run id per voxel: its line's index times (n + 1) plus the number of walls before it on the line
    lines = np.arange(e.size // n, dtype=np.int64).reshape(e.shape[:-1] + (1,)) * (n + 1)
    runs = lines + np.cumsum(~e, axis=-1, dtype=np.int64)
    reached = np.bincount(runs[o], minlength=int(runs.max()) + 1) > 0
    spread = e & reached[runs]
    return np.moveaxis(spread, -1, axis)


def outside_region(empty: np.ndarray) -> np.ndarray:
    """The voxels of `empty` (bool, 3-D) joined to the block's boundary through empty voxels."""
    outside = np.zeros_like(empty)
    for axis in range(3):
        for end in (0, -1):
            index: list[slice | int] = [slice(None)] * 3
            index[axis] = end
            outside[tuple(index)] = empty[tuple(index)]
    count = -1
    while count != (count := int(outside.sum())):
        for axis in range(3):
            outside = _sweep(empty, outside, axis)
    return outside


def fill_enclosed_voids(density: np.ndarray, level: float) -> tuple[np.ndarray, int]:
    """(density with every enclosed voxel below `level` set to 2·level, how many were filled). The
    block's boundary must be empty (the VDB blocks have a one-voxel rim of zeros)."""
    empty = density < level
    enclosed = empty & ~outside_region(empty)
    filled = np.where(enclosed, np.float32(2.0 * level), density).astype(density.dtype, copy=False)
    return filled, int(enclosed.sum())
