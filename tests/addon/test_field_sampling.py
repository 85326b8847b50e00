"""The numpy field sampler (surface-mesh colours) against closed forms of contract 4's field rule."""

from __future__ import annotations

import numpy as np
import pytest
from grid_helpers import cube_grid, sh_for_color

from blender_plenox.io.field_sampling import SH_C1, SparseField, density_for_opacity, sh_basis
from blender_plenox.io.grid_reader import SH_C0, PlenoxGrid


def _block(res: int, values_of_centre, sh_degree: int = 0) -> tuple[PlenoxGrid, np.ndarray]:
    """Every voxel of a res³ grid over [−1, 1]³ active; density and SH from its centre."""
    r = np.arange(res)
    ijk = np.stack(np.meshgrid(r, r, r, indexing="ij"), -1).reshape(-1, 3).astype(np.int32)
    centres = -1.0 + (ijk + 0.5) * (2.0 / res)
    density, sh = values_of_centre(centres)
    grid = PlenoxGrid(np.array([res] * 3), np.array([[-1.0] * 3, [1.0] * 3]), ijk,
                      density.astype(np.float32), sh.astype(np.float32), sh_degree)
    return grid, centres


def _inner_points(res: int, n: int, seed: int = 0) -> np.ndarray:
    """Points between the outermost sample points (where all 8 corners are active voxels)."""
    half = 1.0 - 1.0 / res
    return np.random.default_rng(seed).uniform(-half, half, (n, 3))


def test_opacity_level_stops_that_share_of_light_in_one_voxel():
    for opacity, voxel in [(0.5, 0.1), (0.01, 2.0), (0.99, 1 / 128)]:
        sigma = density_for_opacity(opacity, voxel)
        assert 1.0 - np.exp(-sigma * voxel) == pytest.approx(opacity, rel=1e-9)
    assert density_for_opacity(0.5, 0.25) == pytest.approx(np.log(2.0) / 0.25)
    for bad in (0.0, 1.0, -0.1, 1.5):
        with pytest.raises(ValueError):
            density_for_opacity(bad, 0.1)


def test_sh_basis_is_orthonormal_on_the_sphere():
    # Fibonacci lattice: an equal-area quadrature, exact to well under 1e-3 for degree ≤ 6 products
    n = 20000
    i = np.arange(n) + 0.5
    z = 1.0 - 2.0 * i / n
    phi = np.pi * (1.0 + 5**0.5) * i
    dirs = np.stack([np.sqrt(1 - z * z) * np.cos(phi), np.sqrt(1 - z * z) * np.sin(phi), z], 1)
    basis = sh_basis(dirs, 3)
    gram = basis.T @ basis * (4.0 * np.pi / n)
    np.testing.assert_allclose(gram, np.eye(16), atol=2e-3)


def test_sh_basis_matches_the_trainers():
    torch = pytest.importorskip("torch")
    from trainer.engine import sh as trainer_sh  # a move of the module must fail here, not skip
    dirs = np.random.default_rng(1).normal(size=(64, 3))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    for degree in range(4):
        theirs = trainer_sh.sh_basis(torch.tensor(dirs, dtype=torch.float64), degree).numpy()
        np.testing.assert_allclose(sh_basis(dirs, degree), theirs, atol=1e-12)


def test_linear_fields_are_interpolated_exactly():
    a, b = np.array([0.3, -0.2, 0.1]), 0.7

    def linear(c):
        rgb = 0.5 + 0.2 * c  # per channel x, y, z: a linear colour field
        return b + c @ a, sh_for_color(rgb)

    grid, _ = _block(8, linear)
    pts = _inner_points(8, 500)
    field = SparseField(grid)
    np.testing.assert_allclose(field.interpolate(grid.density[:, None], pts)[:, 0], b + pts @ a, atol=1e-6)
    np.testing.assert_allclose(field.colour(pts), 0.5 + 0.2 * pts, atol=1e-6)


def test_inactive_neighbours_count_as_zero_and_dc_half():
    # one voxel at (5, 2, 7) of an 8x4x10 grid with voxel size 0.5: the contract's single-voxel case
    g = PlenoxGrid(np.array([8, 4, 10]), np.array([[-1.0, 0.0, 2.0], [3.0, 2.0, 7.0]]),
                   np.array([[5, 2, 7]], np.int32), np.array([3.0], np.float32),
                   sh_for_color([[0.2, 0.4, 0.9]]), 0)
    centre = np.array([-1 + 5.5 * 0.5, 0 + 2.5 * 0.5, 2 + 7.5 * 0.5])
    field = SparseField(g)
    pts = np.array([centre, centre + [0.125, 0, 0], centre + [0.25, 0, 0], centre + [0.5, 0, 0],
                    centre + [0.125, 0.125, 0]])
    np.testing.assert_allclose(field.density(pts), [3.0, 2.25, 1.5, 0.0, 3.0 * 0.75 * 0.75], atol=1e-9)
    # colour moves towards the inactive value 0.5 with the same weights
    w = np.array([1.0, 0.75, 0.5, 0.0, 0.5625])[:, None]
    np.testing.assert_allclose(field.colour(pts), w * [0.2, 0.4, 0.9] + (1 - w) * 0.5, atol=1e-6)
    # outside the grid and in an empty grid: nothing there
    assert field.density(np.array([[100.0, 0, 0], [-5.0, -5.0, -5.0]])).tolist() == [0.0, 0.0]
    empty = PlenoxGrid(g.resolution, g.aabb, np.zeros((0, 3), np.int32), np.zeros(0, np.float32),
                       np.zeros((0, 3, 1), np.float32), 0)
    np.testing.assert_allclose(SparseField(empty).colour(pts), 0.5, atol=0)


def test_colour_clamps_after_interpolating():
    # DC values −0.5 and +1.5 on the two voxels either side of a point: interpolated 0.5, not 0.75
    g = PlenoxGrid(np.array([2, 1, 1]), np.array([[0.0, 0, 0], [2.0, 1, 1]]),
                   np.array([[0, 0, 0], [1, 0, 0]], np.int32), np.array([1.0, 1.0], np.float32),
                   sh_for_color([[-0.5] * 3, [1.5] * 3]), 0)
    mid = np.array([[1.0, 0.5, 0.5]])
    np.testing.assert_allclose(SparseField(g).colour(mid), [[0.5] * 3], atol=1e-6)
    np.testing.assert_allclose(SparseField(g).colour(np.array([[0.5, 0.5, 0.5]])), [[0.0] * 3], atol=0)


def test_view_dependent_colour_is_the_closed_form():
    # constant degree-1 coefficients: c(d) = max(0, C0·k0 + 0.5 + C1·(−y·k1 + z·k2 − x·k3))
    k = np.array([[0.4, 0.8, -0.6, 0.3], [-0.2, 0.1, 0.5, -0.9], [0.0, -0.7, 0.2, 0.6]])
    grid, _ = _block(6, lambda c: (np.ones(len(c)), np.repeat(k[None], len(c), axis=0)), sh_degree=1)
    rng = np.random.default_rng(3)
    pts = _inner_points(6, 300, seed=4)
    dirs = rng.normal(size=(300, 3))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    x, y, z = dirs.T
    expect = SH_C0 * k[:, 0] + 0.5 + SH_C1 * (-y[:, None] * k[:, 1] + z[:, None] * k[:, 2] - x[:, None] * k[:, 3])
    np.testing.assert_allclose(SparseField(grid).colour(pts, dirs), np.maximum(expect, 0.0), atol=1e-5)
    # without directions: the view-independent part only
    np.testing.assert_allclose(SparseField(grid).colour(pts), np.tile(SH_C0 * k[:, 0] + 0.5, (300, 1)), atol=1e-5)


def test_many_points_are_coloured_in_chunks_like_few():
    grid = cube_grid(16, 3, 13, 50.0, (0.2, 0.6, 0.9))
    pts = np.random.default_rng(5).uniform(-1, 1, (70000, 3))  # more than one chunk
    field = SparseField(grid)
    whole = field.colour(pts)
    np.testing.assert_allclose(whole[-10:], field.colour(pts[-10:]), atol=0)
