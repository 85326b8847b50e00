"""Filling the empty space a surface encloses, against hand-built shells and tunnels and a plain
dilation flood fill."""

from __future__ import annotations

import numpy as np

from blender_plenox.io.enclosed_voids import fill_enclosed_voids, outside_region


def _dilation_reference(empty: np.ndarray) -> np.ndarray:
    """Outside by repeated one-voxel growth (6-neighbourhood) from the boundary: slow and obvious."""
    outside = np.zeros_like(empty)
    for axis in range(3):
        outside[(slice(None),) * axis + (0,)] = True
        outside[(slice(None),) * axis + (-1,)] = True
    outside &= empty
    while True:
        grown = outside.copy()
        for axis in range(3):
            lo = (slice(None),) * axis + (slice(None, -1),)
            hi = (slice(None),) * axis + (slice(1, None),)
            grown[hi] |= outside[lo]
            grown[lo] |= outside[hi]
        grown &= empty
        if np.array_equal(grown, outside):
            return outside
        outside = grown


def _hollow_cube(size: int = 12, lo: int = 2, hi: int = 10) -> np.ndarray:
    density = np.zeros((size,) * 3, np.float32)
    density[lo:hi, lo:hi, lo:hi] = 10.0
    density[lo + 1 : hi - 1, lo + 1 : hi - 1, lo + 1 : hi - 1] = 0.0
    return density


def test_a_closed_shell_is_filled_and_a_pierced_one_is_not():
    density = _hollow_cube()
    filled, count = fill_enclosed_voids(density, 5.0)
    assert count == 6**3
    assert np.all(filled[3:9, 3:9, 3:9] == 10.0) and np.all(filled[:2] == 0.0)
    np.testing.assert_array_equal(filled[density > 0], density[density > 0])
    pierced = density.copy()
    pierced[2, 5, 5] = 0.0  # one voxel of the wall
    again, count = fill_enclosed_voids(pierced, 5.0)
    assert count == 0 and np.array_equal(again, pierced)
    # a wall voxel below the level is a hole too; one above it is not
    weak = density.copy()
    weak[2, 5, 5] = 4.9
    assert fill_enclosed_voids(weak, 5.0)[1] == 0
    assert fill_enclosed_voids(weak, 4.0)[1] == 6**3


def test_a_winding_tunnel_reaches_the_chamber():
    density = np.full((14, 14, 14), 10.0, np.float32)
    density[0], density[-1], density[:, 0], density[:, -1], density[:, :, 0], density[:, :, -1] = 0, 0, 0, 0, 0, 0
    density[7:11, 7:11, 7:11] = 0.0  # the chamber
    path = [(slice(0, 6), 3, 3), (5, slice(3, 10), 3), (5, 9, slice(3, 10)), (slice(5, 9), 9, 9)]
    for cut in path:  # along x, then y, then z, then x again into the chamber
        density[cut] = 0.0
    assert fill_enclosed_voids(density, 5.0)[1] == 0
    blocked = density.copy()
    blocked[1, 3, 3] = 10.0  # close the entrance: tunnel and chamber are enclosed
    filled, count = fill_enclosed_voids(blocked, 5.0)
    assert count == int(((blocked < 5.0) & ~_dilation_reference(blocked < 5.0)).sum())
    assert np.all(filled[7:11, 7:11, 7:11] == 10.0)


def test_random_fields_match_a_dilation_flood_fill():
    rng = np.random.default_rng(7)
    for trial in range(6):
        empty = rng.random((18, 15, 16)) < (0.45 + 0.05 * trial)
        empty[0], empty[-1] = True, True
        np.testing.assert_array_equal(outside_region(empty), _dilation_reference(empty))
