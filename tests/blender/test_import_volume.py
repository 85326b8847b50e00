"""Importing a grid as a Volume: voxel positions, a Cycles render against the closed form, and errors."""

from __future__ import annotations

import numpy as np
import pytest

from volume_render_helpers import hat_profile, ortho_camera, psnr, render_linear, setup_cycles  # isort: skip

import bpy
from grid_helpers import cube_grid, sh_for_color
from grid_probe import OPENVDB, index_to_world, read_block, sample_grid, sample_voxels

from blender_plenox.io.grid_reader import GridFileError, PlenoxGrid, read_grid, write_grid
from blender_plenox.io.vdb_arrays import INACTIVE_COLOR, build_vdb_arrays, srgb_to_linear
from blender_plenox.volume.importer import import_grid
from blender_plenox.volume.vdb_writer import write_vdb
from blender_plenox.volume.volume_object import COLLECTION_NAME, NODE_MULTIPLIER, NODE_THRESHOLD


@pytest.fixture(autouse=True)
def empty_scene():
    bpy.ops.wm.read_factory_settings(use_empty=True)
    yield bpy.context.scene


def _volume_object(path: str):
    """`path` loaded by Blender's own reader, as an object at the origin."""
    vol = bpy.data.volumes.new("probe")
    vol.filepath = path
    assert vol.grids.load(), vol.grids.error_message
    obj = bpy.data.objects.new("probe", vol)
    bpy.context.scene.collection.objects.link(obj)
    return obj


def test_single_voxel_lies_at_its_cell_centre(tmp_path):
    ijk = np.array([[5, 2, 7]], np.int32)
    g = PlenoxGrid(
        np.array([8, 4, 10]),
        np.array([[-1.0, 0.0, 2.0], [3.0, 2.0, 7.0]]),
        ijk,
        np.array([3.0], np.float32),
        sh_for_color([[0.2, 0.4, 0.6]]),
        0,
    )
    path = write_vdb(build_vdb_arrays(g), str(tmp_path / "one.vdb"))
    # Voxel size (0.5, 0.5, 0.5); cell centre of (5, 2, 7) = min + (ijk + 0.5)·size.
    centre = [-1 + 5.5 * 0.5, 0 + 2.5 * 0.5, 2 + 7.5 * 0.5]
    # Through Blender's own loader (every version): the index map, the voxel and its empty neighbours.
    obj = _volume_object(path)
    np.testing.assert_allclose(index_to_world(obj, "density") @ [5.0, 2.0, 7.0, 1.0], [*centre, 1.0], atol=1e-6)
    around = np.stack(np.meshgrid(*[np.arange(-1, 2)] * 3, indexing="ij"), -1).reshape(-1, 3) + ijk
    density = sample_voxels(obj, "density", around)
    assert density[13] == pytest.approx(3.0) and np.count_nonzero(density) == 1
    np.testing.assert_allclose(sample_voxels(obj, "color", ijk)[0], [0.2, 0.4, 0.6], atol=1e-6)
    # Cycles' trilinear reading peaks at the centre: half a voxel off towards empty space it halves.
    np.testing.assert_allclose(sample_grid(obj, "density", [centre, np.add(centre, [0.25, 0, 0])]), [3.0, 1.5], atol=1e-4)
    if OPENVDB is not None:  # the binding's view: one active voxel, nothing else in the tree
        grids, _ = OPENVDB.readAll(path)
        grid = next(gr for gr in grids if gr.name == "density")
        assert grid.activeVoxelCount() == 1
        lo, hi = grid.evalActiveVoxelBoundingBox()
        assert tuple(lo) == tuple(hi) == (5, 2, 7)
        np.testing.assert_allclose(grid.transform.indexToWorld((5.0, 2.0, 7.0)), centre, atol=1e-9)


def test_fixture_grid_positions_survive_into_the_vdb(fixture_grid, tmp_path):
    g = read_grid(fixture_grid)
    obj = _volume_object(write_vdb(build_vdb_arrays(g), str(tmp_path / "fx.vdb")))
    m = index_to_world(obj, "density")
    np.testing.assert_allclose(m @ [0.0, 0.0, 0.0, 1.0], [-0.75, -1.6, -2.5, 1.0], atol=1e-6)
    np.testing.assert_allclose(m @ [3.0, 4.0, 5.0, 1.0], [0.75, 1.6, 2.5, 1.0], atol=1e-6)
    # Contract 4 v2: the raw signed value of (2, 2, 3) is kept (it neighbours (1, 2, 3)): five voxels.
    density = read_block(obj, "density")
    assert np.count_nonzero(density.values) == 5
    assert density.values[tuple(np.array([2, 2, 3]) - density.lo)] == pytest.approx(-4.0)
    np.testing.assert_allclose(sample_voxels(obj, "color", [[0, 0, 0]])[0], [1.0, -0.25, 0.0], atol=1e-6)
    if OPENVDB is not None:
        grids, _ = OPENVDB.readAll(obj.data.filepath)
        assert next(gr for gr in grids if gr.name == "density").activeVoxelCount() == 5


def test_cycles_render_of_a_cube_matches_the_closed_form(empty_scene, tmp_path):
    scene = empty_scene
    res, lo, hi, sigma = 8, 2, 6, 3.0
    colour = np.array([0.8, 0.3, 0.1])
    background = np.array([0.1, 0.2, 0.4])
    write_grid(tmp_path / "cube.npz", cube_grid(res, lo, hi, sigma, colour))
    result = import_grid(scene, str(tmp_path / "cube.npz"), color_space="TRAINER")
    assert result.active_voxels == 64 and result.obj.users_collection[0].name == COLLECTION_NAME
    size, scale = 32, 1.5
    setup_cycles(scene, size, size, samples=8, background=tuple(background))
    ortho_camera(scene, (0.0, 0.0, 3.0), scale)
    image = render_linear(scene, str(tmp_path / "cube.exr"))

    # Closed form: the field is separable, σ(x)=σ·h(x)h(y)h(z) and colour 0.5 + (c − 0.5)·h(x)h(y)h(z),
    # with h the 1-D trilinear profile of voxels 2..5 (cell centres −0.375 … 0.375, voxel 0.25).
    vox = 2.0 / res
    lo_c, hi_c = -1 + (lo + 0.5) * vox, -1 + (hi - 0.5) * vox
    px = (np.arange(size) + 0.5) / size * scale - scale / 2
    hxy = hat_profile(px[None, :], lo_c, hi_c, vox) * hat_profile(
        -px[:, None], lo_c, hi_c, vox
    )  # rows: +y up
    z = np.linspace(1.0, -1.0, 4001)
    dz = z[0] - z[1]
    w = hxy[..., None] * hat_profile(z, lo_c, hi_c, vox)  # (H, W, Z)
    s = sigma * w
    tau_before = np.cumsum(s, -1) * dz - s * dz  # optical depth in front of each sample
    trans = np.exp(-tau_before)
    col = 0.5 + (colour - 0.5)[None, None, None, :] * w[..., None]
    emitted = np.sum((trans * s)[..., None] * col, axis=2) * dz
    expected = emitted + np.exp(-np.sum(s, -1) * dz)[..., None] * background
    # Along an axis through the middle the optical depth is σ · (number of voxels) · voxel size.
    assert np.sum(s[size // 2, size // 2]) * dz == pytest.approx(sigma * (hi - lo) * vox, rel=1e-4)
    value = psnr(image, expected)
    print(f"cube render vs closed form: {value:.2f} dB")
    assert value > 35.0
    # The footprint's edge is where it should be: outside the support lies only the world colour.
    np.testing.assert_allclose(image[0, 0], background, atol=2e-3)


def _trilinear_dense(block: np.ndarray, f: np.ndarray, outside: float) -> np.ndarray:
    """Trilinear lookup of block (X, Y, Z[, C]) at fractional indices f (..., 3), `outside` beyond it."""
    pad = np.pad(block, [(1, 1)] * 3 + [(0, 0)] * (block.ndim - 3), constant_values=outside)
    f = np.clip(f + 1.0, 0.0, np.array(pad.shape[:3]) - 1.0 - 1e-9)
    i0 = np.floor(f).astype(int)
    t = f - i0
    out = 0.0
    for corner in np.ndindex(2, 2, 2):
        c = np.array(corner)
        w = np.prod(np.where(c == 1, t, 1 - t), axis=-1)
        v = pad[i0[..., 0] + c[0], i0[..., 1] + c[1], i0[..., 2] + c[2]]
        out = out + (w[..., None] * v if v.ndim > w.ndim else w * v)
    return out


@pytest.mark.parametrize("grid_space, color_space", [("srgb", "TRAINER"), ("srgb", "LINEAR"), ("linear", "LINEAR")])
def test_cycles_clamps_after_interpolating_signed_values(empty_scene, tmp_path, grid_space, color_space):
    """Negative voxel densities and DC values (contract 4 v2) render as max(0, trilinear(·)), per channel.
    An sRGB grid's colours are decoded after that for "LINEAR"; a linear grid's are scene-linear as they are."""
    scene = empty_scene
    res = 8
    rng = np.random.default_rng(5)
    idx = np.stack(np.meshgrid(*[np.arange(res)] * 3, indexing="ij"), -1).reshape(-1, 3)
    inner = ((idx >= 2) & (idx <= 5)).all(1)
    shell = ((idx >= 1) & (idx <= 6)).all(1) & ~inner
    coords = idx[inner | shell].astype(np.int32)
    density = np.where(inner[inner | shell], 6.0, -5.0).astype(np.float32)   # negative rim: sharper edges
    dc = rng.uniform(-0.4, 1.3, (len(coords), 3)).astype(np.float32)         # beyond [0, 1] both ways
    grid = PlenoxGrid(np.array([res] * 3), np.array([[-1.0] * 3, [1.0] * 3]), coords, density, sh_for_color(dc), 0,
                      color_space=grid_space)
    write_grid(tmp_path / "signed.npz", grid)
    background = np.array([0.1, 0.2, 0.4])
    result = import_grid(scene, str(tmp_path / "signed.npz"), color_space=color_space)
    assert result.obj.name == "Plenoxels" and result.obj.active_material.name.startswith("Plenoxels")
    size, scale = 32, 1.8
    setup_cycles(scene, size, size, samples=8, background=tuple(background))
    ortho_camera(scene, (0.0, 0.0, 3.0), scale)
    image = render_linear(scene, str(tmp_path / "signed.exr"))

    # Reference: the contract's field on dense arrays, by numpy: σ = max(0, trilinear(density)),
    # c = max(0, trilinear(dc value)) (inactive: 0 and 0.5), integrated along each orthographic ray.
    dense_d = np.zeros((res,) * 3, np.float64)
    dense_c = np.full((res,) * 3 + (3,), INACTIVE_COLOR, np.float64)
    dense_d[tuple(coords.T)] = density
    dense_c[tuple(coords.T)] = dc
    vox = 2.0 / res
    px = (np.arange(size) + 0.5) / size * scale - scale / 2
    z = np.linspace(1.0, -1.0, 1601)
    dz = z[0] - z[1]
    pts = np.stack(np.broadcast_arrays(px[None, :, None], -px[:, None, None], z[None, None, :]), -1)  # rows: +y up
    f = (pts + 1.0) / vox - 0.5
    s = np.maximum(_trilinear_dense(dense_d, f, 0.0), 0.0)
    col = np.maximum(_trilinear_dense(dense_c, f, INACTIVE_COLOR), 0.0)
    if grid_space == "srgb" and color_space == "LINEAR":
        col = srgb_to_linear(col)
    trans = np.exp(-(np.cumsum(s, -1) * dz - s * dz))
    expected = np.sum((trans * s)[..., None] * col, axis=2) * dz + np.exp(-np.sum(s, -1) * dz)[..., None] * background
    # Clamping per voxel before interpolating (contract 4 v1's reading) would look clearly different.
    s_v1 = _trilinear_dense(np.maximum(dense_d, 0.0), f, 0.0)
    assert np.abs(np.sum(s_v1, -1) - np.sum(s, -1)).max() * dz > 0.5
    value = psnr(image, expected)
    print(f"signed {grid_space} grid ({color_space}) Cycles vs closed form: {value:.2f} dB")
    assert value > 35.0


def test_reimport_replaces_and_material_controls_apply(empty_scene, tmp_path):
    scene = empty_scene
    write_grid(tmp_path / "a.npz", cube_grid(8, 2, 6, 3.0, (0.8, 0.3, 0.1)))
    write_grid(tmp_path / "b.npz", cube_grid(8, 1, 3, 3.0, (0.8, 0.3, 0.1)))
    first = import_grid(scene, str(tmp_path / "a.npz"), multiplier=2.0, threshold=0.5)
    second = import_grid(scene, str(tmp_path / "b.npz"))
    assert first.obj == second.obj and len(bpy.data.volumes) == 1
    assert second.active_voxels == 8
    assert tuple(read_block(second.obj, "density").active_lo) == (1, 1, 1)  # b's cube, not a's
    nodes = second.obj.active_material.node_tree.nodes
    assert nodes[NODE_MULTIPLIER].inputs[1].default_value == 1.0
    assert nodes[NODE_THRESHOLD].inputs[1].default_value == 0.0
    third = import_grid(scene, str(tmp_path / "a.npz"), multiplier=2.0, threshold=0.5)
    assert nodes[NODE_MULTIPLIER].inputs[1].default_value == 2.0 and third.active_voxels == 64
    assert len(list(tmp_path.glob("a.*.vdb"))) == 1


def test_corrupt_or_foreign_file_leaves_the_scene_untouched(empty_scene, tmp_path):
    scene = empty_scene
    write_grid(tmp_path / "good.npz", cube_grid(8, 2, 6, 3.0, (0.8, 0.3, 0.1)))
    import_grid(scene, str(tmp_path / "good.npz"))
    before = (len(bpy.data.objects), len(bpy.data.volumes), bpy.data.objects["Plenoxels"].data.filepath)
    (tmp_path / "junk.npz").write_bytes(b"garbage" * 100)
    np.savez(tmp_path / "foreign.npz", weights=np.zeros(3))
    for bad in ("junk.npz", "foreign.npz", "missing.npz"):
        with pytest.raises(GridFileError, match=bad):
            import_grid(scene, str(tmp_path / bad))
    after = (len(bpy.data.objects), len(bpy.data.volumes), bpy.data.objects["Plenoxels"].data.filepath)
    assert before == after
