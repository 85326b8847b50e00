import numpy as np
import pytest
from grid_helpers import random_grid, sh_for_color

from blender_plenox.io.grid_reader import PlenoxGrid
from blender_plenox.io.vdb_arrays import INACTIVE_COLOR, build_vdb_arrays, srgb_to_linear


def _trilinear(block: np.ndarray, idx: np.ndarray, outside) -> np.ndarray:
    """Trilinear lookup of block (X, Y, Z[, C]) at fractional indices idx (N, 3); `outside` beyond it."""
    pad = np.pad(block, [(1, 1)] * 3 + [(0, 0)] * (block.ndim - 3), constant_values=outside)
    f = idx + 1.0
    i0 = np.floor(f).astype(int)
    t = f - i0
    out = 0.0
    for corner in np.ndindex(2, 2, 2):
        c = np.array(corner)
        w = np.prod(np.where(c == 1, t, 1 - t), axis=1)
        ii = i0 + c
        v = pad[ii[:, 0], ii[:, 1], ii[:, 2]]
        out = out + (w[:, None] * v if v.ndim == 2 else w * v)
    return out


def test_transform_puts_each_voxel_at_its_cell_centre():
    g = random_grid()
    a = build_vdb_arrays(g)
    np.testing.assert_allclose(a.index_to_world(g.coords), g.sample_points(), atol=1e-12)
    rows = np.array(a.index_to_world_rows())
    homog = np.c_[g.coords.astype(float), np.ones(len(g.coords))]
    np.testing.assert_allclose((homog @ rows)[:, :3], g.sample_points(), atol=1e-12)
    # Values sit in the dense block at coords - offset.
    local = g.coords - a.offset
    np.testing.assert_array_equal(a.density[local[:, 0], local[:, 1], local[:, 2]], g.density)
    assert a.active_voxels == g.num_voxels == int((a.density > 0).sum())


def test_fields_match_the_trainers_trilinear_rule_via_grid_sample():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    g0 = random_grid(n=300, res=(10, 9, 8), sh_degree=0)
    # Signed densities and DC values beyond [0, 1], as training leaves them (contract 4 v2).
    values = rng.uniform(-0.4, 1.4, (g0.num_voxels, 3)).astype(np.float32)
    density = (g0.density - np.float32(12.0)).astype(np.float32)
    g = PlenoxGrid(g0.resolution, g0.aabb, g0.coords, density, sh_for_color(values), 0)
    a = build_vdb_arrays(g)
    res = g.resolution
    # The trainer's side: dense full-resolution volumes, zero where inactive, sampled by grid_sample.
    vol = np.zeros((4, *res), np.float32)
    vol[0][tuple(g.coords.T)] = g.density
    vol[1:, g.coords[:, 0], g.coords[:, 1], g.coords[:, 2]] = g.sh[:, :, 0].T
    vol_t = torch.from_numpy(vol).permute(0, 3, 2, 1)[None]  # (1, C, z, y, x)
    vs = g.voxel_size
    pts = g.aabb[0] + vs * 0.5 + rng.uniform(0, 1, (500, 3)) * (g.aabb[1] - g.aabb[0] - vs)
    frac = (pts - g.aabb[0]) / vs - 0.5
    norm = torch.from_numpy(frac / (res - 1) * 2 - 1).float().view(1, -1, 1, 1, 3)
    s = torch.nn.functional.grid_sample(vol_t, norm, align_corners=True).view(4, -1).numpy()
    ref_density = np.maximum(s[0], 0)
    ref_colour = np.maximum(0.28209479 * s[1:].T + 0.5, 0)
    # The add-on's side: the dense block with its offset, colour background outside active voxels;
    # interpolated, then clamped (as the material does after its Attribute nodes).
    idx = (pts - a.origin) / a.voxel_size - a.offset
    ours = np.maximum(_trilinear(a.density, idx, 0.0), 0)
    np.testing.assert_allclose(ours, ref_density, rtol=1e-5, atol=1e-4)
    assert (ref_density > 0).mean() > 0.2 and (ref_density == 0).mean() > 0.2
    # Colour matters where there is density; there the kept voxels give the trainer's colour exactly.
    seen = ref_density > 0
    ours_c = np.maximum(_trilinear(a.color, idx, INACTIVE_COLOR), 0)
    np.testing.assert_allclose(ours_c[seen], ref_colour[seen], atol=1e-5)
    # Clamping each voxel first (contract 4 v1's rule) would give a different field.
    v1 = _trilinear(np.maximum(a.density, 0), idx, 0.0)
    assert np.abs(v1 - ref_density).max() > 1.0


def test_min_density_drops_voxels_and_colours_stay_raw():
    g = random_grid()
    a = build_vdb_arrays(g, min_density=15.0)
    assert a.active_voxels == int((g.density > 15.0).sum())
    assert a.density[a.density > 0].min() > 15.0
    local = g.coords - a.offset
    kept = g.density > 15.0
    got = a.color[local[kept, 0], local[kept, 1], local[kept, 2]]
    # Unclamped DC values; any colour-space conversion happens in the material, after the clamp.
    np.testing.assert_allclose(got, g.dc_value()[kept], atol=1e-6)
    assert a.color_background == INACTIVE_COLOR == 0.5


def test_negative_voxels_are_kept_only_next_to_positive_ones():
    res = np.array([12, 4, 4])
    coords = np.array([[1, 1, 1], [2, 1, 1], [3, 2, 2], [4, 1, 1], [9, 1, 1], [10, 2, 2]], np.int32)
    density = np.array([5.0, -3.0, -1.0, -2.0, -6.0, 0.0], np.float32)
    g = PlenoxGrid(res, np.array([[0.0, 0, 0], [12, 4, 4]]), coords, density,
                   sh_for_color(np.full((6, 3), -0.2, np.float32)), 0)
    a = build_vdb_arrays(g)
    # Neighbours of the one positive voxel (1,1,1): (2,1,1) and, diagonally, none else within one voxel;
    # (3,2,2), (4,1,1), (9,1,1) and (10,2,2) only ever meet corners <= 0, where max(0, ·) is 0 anyway.
    assert a.active_voxels == 2
    local = coords[:2] - a.offset
    np.testing.assert_array_equal(a.density[local[:, 0], local[:, 1], local[:, 2]], [5.0, -3.0])
    np.testing.assert_allclose(a.color[local[:, 0], local[:, 1], local[:, 2]], -0.2, atol=1e-6)
    assert np.count_nonzero(a.density) == 2


def test_srgb_to_linear_inverts_the_srgb_encoding():
    lin = np.linspace(0, 1, 101)
    enc = np.where(lin <= 0.0031308, lin * 12.92, 1.055 * lin ** (1 / 2.4) - 0.055)
    np.testing.assert_allclose(srgb_to_linear(enc), lin, atol=1e-6)


def test_empty_grid_gives_an_empty_block():
    g = random_grid()
    a = build_vdb_arrays(g, min_density=1e9)
    assert a.active_voxels == 0 and not a.density.any()


def test_world_bounds_cover_the_active_samples_plus_one_voxel():
    g = random_grid()
    a = build_vdb_arrays(g)
    lo, hi = a.world_bounds()
    pts = g.sample_points()
    np.testing.assert_allclose(lo, pts.min(0) - g.voxel_size)
    np.testing.assert_allclose(hi, pts.max(0) + g.voxel_size)


def test_higher_sh_coefficients_follow_the_kept_mask_in_c_order():
    """sh_rest row i is the voxel at np.argwhere(kept)[i] + offset: its coefficients 1..K−1 per channel,
    whatever order the file lists its voxels in."""
    shuffled = random_grid(n=300, sh_degree=2, seed=3)
    order = np.lexsort(shuffled.coords.T[::-1])  # C order, as the trainer writes its voxels
    in_order = PlenoxGrid(shuffled.resolution, shuffled.aabb, shuffled.coords[order], shuffled.density[order],
                          shuffled.sh[order], 2)
    for grid in (shuffled, in_order):
        arrays = build_vdb_arrays(grid)
        assert arrays.sh_degree == 2 and arrays.sh_rest.shape == (arrays.active_voxels, 3, 8)
        row_of = {tuple(c): i for i, c in enumerate(grid.coords.tolist())}
        for i, ijk in enumerate(np.argwhere(arrays.kept) + arrays.offset):
            np.testing.assert_array_equal(arrays.sh_rest[i], grid.sh[row_of[tuple(ijk.tolist())], :, 1:])
    light = build_vdb_arrays(grid, view_dependent=False)
    assert light.sh_degree == 0 and light.sh_rest.shape == (light.active_voxels, 3, 0)
    np.testing.assert_array_equal(light.color, arrays.color)
