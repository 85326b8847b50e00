"""Importing a grid as a Volume: voxel positions, a Cycles render against the closed form, and errors."""

from __future__ import annotations

import numpy as np
import pytest

from volume_render_helpers import hat_profile, ortho_camera, psnr, render_linear, setup_cycles  # isort: skip

import bpy
from grid_helpers import cube_grid, sh_for_color

from blender_plenox.io.grid_reader import GridFileError, PlenoxGrid, read_grid, write_grid
from blender_plenox.io.vdb_arrays import build_vdb_arrays
from blender_plenox.volume.importer import import_grid
from blender_plenox.volume.vdb_writer import load_openvdb, write_vdb
from blender_plenox.volume.volume_object import COLLECTION_NAME, NODE_MULTIPLIER, NODE_THRESHOLD


@pytest.fixture(autouse=True)
def empty_scene():
    bpy.ops.wm.read_factory_settings(use_empty=True)
    yield bpy.context.scene


def test_single_voxel_lies_at_its_cell_centre(tmp_path):
    vdb = load_openvdb()
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
    grids, _ = vdb.readAll(path)
    density = next(gr for gr in grids if gr.name == "density")
    assert density.activeVoxelCount() == 1
    lo, hi = density.evalActiveVoxelBoundingBox()
    assert tuple(lo) == tuple(hi) == (5, 2, 7)
    # Voxel size (0.5, 0.5, 0.5); cell centre of (5, 2, 7) = min + (ijk + 0.5)·size.
    world = density.transform.indexToWorld((5.0, 2.0, 7.0))
    np.testing.assert_allclose(world, [-1 + 5.5 * 0.5, 0 + 2.5 * 0.5, 2 + 7.5 * 0.5], atol=1e-9)
    assert density.getConstAccessor().getValue((5, 2, 7)) == pytest.approx(3.0)
    colour = next(gr for gr in grids if gr.name == "color")
    np.testing.assert_allclose(colour.getConstAccessor().getValue((5, 2, 7)), [0.2, 0.4, 0.6], atol=1e-6)


def test_fixture_grid_positions_survive_into_the_vdb(fixture_grid, tmp_path):
    vdb = load_openvdb()
    g = read_grid(fixture_grid)
    grids, _ = vdb.readAll(write_vdb(build_vdb_arrays(g), str(tmp_path / "fx.vdb")))
    density = next(gr for gr in grids if gr.name == "density")
    np.testing.assert_allclose(density.transform.indexToWorld((0.0, 0.0, 0.0)), [-0.75, -1.6, -2.5])
    np.testing.assert_allclose(density.transform.indexToWorld((3.0, 4.0, 5.0)), [0.75, 1.6, 2.5])
    # The zero-density voxel (2, 2, 3) is inactive; the other four are active.
    assert density.activeVoxelCount() == 4


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


def test_reimport_replaces_and_material_controls_apply(empty_scene, tmp_path):
    scene = empty_scene
    write_grid(tmp_path / "a.npz", cube_grid(8, 2, 6, 3.0, (0.8, 0.3, 0.1)))
    write_grid(tmp_path / "b.npz", cube_grid(8, 1, 3, 3.0, (0.8, 0.3, 0.1)))
    first = import_grid(scene, str(tmp_path / "a.npz"), multiplier=2.0, threshold=0.5)
    second = import_grid(scene, str(tmp_path / "b.npz"))
    assert first.obj == second.obj and len(bpy.data.volumes) == 1
    assert second.active_voxels == 8
    vdb = load_openvdb()
    density = next(
        g for g in vdb.readAll(bpy.path.abspath(second.obj.data.filepath))[0] if g.name == "density"
    )
    assert tuple(density.evalActiveVoxelBoundingBox()[0]) == (1, 1, 1)
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
