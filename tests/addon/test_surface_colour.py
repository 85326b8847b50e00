"""io/surface_colour.py against closed forms: a slab of known density and two colours (the front
one's share of the light is 1 − exp(−σ·thickness)), the background behind a faint field, and the
trainer's background read from a grid's metadata."""

from __future__ import annotations

import numpy as np

from blender_plenox.io.field_sampling import SparseField
from blender_plenox.io.grid_reader import SH_C0, PlenoxGrid
from blender_plenox.io.surface_colour import rendered_colour, training_background

RES = 16
H = 1.0 / RES


def slab_grid(sigma: float, front: float, back: float) -> PlenoxGrid:
    """Voxels x ≥ 8 (sample points x ≥ 8.5 h) hold density σ; those up to x = 10 colour `front`
    (grey), the ones behind colour `back`; everywhere the DC value is exact for trilinear."""
    r = np.arange(RES)
    ijk = np.stack(np.meshgrid(r, r, r, indexing="ij"), -1).reshape(-1, 3)
    dense = ijk[:, 0] >= 6  # two voxels of colour ahead of the density, so no blend with "inactive"
    ijk = ijk[dense]
    density = np.where(ijk[:, 0] >= 8, sigma, 0.0).astype(np.float32)
    grey = np.where(ijk[:, 0] <= 10, front, back)
    sh = np.repeat(((grey - 0.5) / SH_C0)[:, None, None], 3, axis=1).astype(np.float32)
    return PlenoxGrid(np.array([RES] * 3), np.array([[0.0] * 3, [1.0] * 3]), ijk.astype(np.int32), density, sh, 0)


def test_a_dense_slab_shows_its_front_colour() -> None:
    # σ·h = 8: the first voxel stops all but e^−8 of the light, so only the front colour is seen
    field = SparseField(slab_grid(8.0 / H, 0.8, 0.2))
    points = np.array([[8.5 * H, 0.5, 0.5]])  # on the slab's face
    out = rendered_colour(field, points, np.array([[-1.0, 0.0, 0.0]]), H, False)
    np.testing.assert_allclose(out, [[0.8, 0.8, 0.8]], atol=1e-3)


def test_a_faint_slab_lets_the_background_through() -> None:
    # σ·h = 0.01 over at most 11.5 voxels of ray: it stops about 1 − e^−0.1 of the light, the rest
    # shows the background; with no background the slab's own colours, normalised
    field = SparseField(slab_grid(0.01 / H, 0.6, 0.6))
    points, normals = np.array([[9.0 * H, 0.5, 0.5]]), np.array([[-1.0, 0.0, 0.0]])
    white = rendered_colour(field, points, normals, H, False, np.ones(3))
    assert 0.9 < white[0, 0] < 0.99 and np.allclose(white, white[0, 0])
    # (the ray's last samples lie past the grid's last voxel, where the colour blends to grey)
    np.testing.assert_allclose(rendered_colour(field, points, normals, H, False), [[0.6] * 3], atol=2e-3)


def test_training_background() -> None:
    np.testing.assert_array_equal(training_background({"config": {"background": [1, 1, 1]}}), np.ones(3))
    assert training_background({}) is None
    assert training_background({"config": {"background": "white"}}) is None
    assert training_background({"config": None}) is None
