"""The numpy OpenVDB writer against independent readers: Blender's own volume loading (every voxel,
through Geometry Nodes, on every version), Blender's openvdb module where the build has one (names,
metadata, transform, every active voxel and value, background; not the 4.2 wheel), and Cycles renders,
compared with renders of the same grids written by openvdb itself where it can write them."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

from volume_render_helpers import hat_profile, ortho_camera, psnr, render_linear, setup_cycles  # isort: skip

import bpy
from grid_helpers import cube_grid, random_grid
from grid_probe import OPENVDB, index_to_world, needs_openvdb, sample_voxels

from blender_plenox.io.grid_reader import write_grid
from blender_plenox.io.vdb_arrays import VdbArrays, build_vdb_arrays
from blender_plenox.io.vdb_file import VdbGrid, write_vdb_file
from blender_plenox.volume.importer import import_grid
from blender_plenox.volume.vdb_writer import COLOR_GRID, DENSITY_GRID, write_vdb
from blender_plenox.volume.volume_object import create_or_update

ROWS = [[0.5, 0.0, 0.0, 0.0], [0.0, 0.5, 0.0, 0.0], [0.0, 0.0, 0.5, 0.0], [1.0, -2.0, 3.0, 1.0]]


@pytest.fixture(autouse=True)
def empty_scene():
    bpy.ops.wm.read_factory_settings(use_empty=True)
    yield bpy.context.scene


def _by_name(path: str) -> tuple[dict, dict]:
    grids, meta = OPENVDB.readAll(path)
    return {g.name: g for g in grids}, meta


def _active_items(grid) -> dict[tuple[int, int, int], np.ndarray]:
    """Every active value the reader finds, keyed by voxel; tiles would show as depth < 3."""
    found = {}
    for item in grid.citerOnValues():
        assert item.depth == 3 and item.count == 1, "the writer makes no tiles"
        found[tuple(item.min)] = np.atleast_1d(np.asarray(item.value, np.float32))
    return found


def _load_volume(path: str):
    """A Volume datablock on `path`, its grids loaded by Blender's own reader."""
    vol = bpy.data.volumes.new("probe")
    vol.filepath = path
    assert vol.grids.load() and vol.grids.is_loaded, vol.grids.error_message
    return vol


def _sparse_blocks(seed: int, shape=(45, 30, 140)) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    density = np.where(rng.random(shape) < 0.04, rng.normal(0, 5, shape), 0.0).astype(np.float32)
    colour = np.full((*shape, 3), 0.5, np.float32)
    picked = rng.random(shape) < 0.04
    colour[picked] = rng.normal(0.5, 0.5, (int(picked.sum()), 3))
    colour[picked & (rng.random(shape) < 0.3), 2] = 0.5  # one component at the background: still active
    return density, colour


OFFSETS = [(0, 0, 0), (-7, 13, -200), (-4100, 120, 4030), (4090, -4097, -1)]


def _write_blocks(path: str, offset) -> tuple[np.ndarray, np.ndarray]:
    density, colour = _sparse_blocks(seed=abs(sum(offset)))
    write_vdb_file(
        path,
        [VdbGrid("density", density, offset, ROWS, 0.0, "fog volume"),
         VdbGrid("color", colour, offset, ROWS, (0.5, 0.5, 0.5))],
        {"source": "test", "color_space": "LINEAR"},
    )
    return density, colour


@pytest.mark.parametrize("offset", OFFSETS)
def test_blender_reads_back_every_voxel(tmp_path, offset):
    """Blender's own loader (its OpenVDB: 11 in 4.2, 12 later) sees every value where it was written
    and the background around, across root-node children at large offsets."""
    path = str(tmp_path / "blocks.vdb")
    density, colour = _write_blocks(path, offset)
    vol = _load_volume(path)
    assert {g.name: g.data_type for g in vol.grids} == {"density": "FLOAT", "color": "VECTOR_FLOAT"}
    np.testing.assert_allclose(index_to_world(vol, "density"), np.array(ROWS).T, atol=1e-12)
    for name, values, bg in (("density", density, 0.0), ("color", colour, 0.5)):
        shape = np.array(values.shape[:3])
        ijk = np.stack(np.meshgrid(*[np.arange(-1, n + 1) for n in shape], indexing="ij"), -1).reshape(-1, 3)
        read = sample_voxels(vol, name, ijk + offset)
        inside = np.all((ijk >= 0) & (ijk < shape), axis=1)
        np.testing.assert_array_equal(read[inside], values[tuple(ijk[inside].T)])  # raw float32: exact
        assert np.all(read[~inside] == bg)


@needs_openvdb
@pytest.mark.parametrize("offset", OFFSETS)
def test_openvdb_reads_back_every_active_voxel(tmp_path, offset):
    path = str(tmp_path / "blocks.vdb")
    density, colour = _write_blocks(path, offset)
    grids, meta = _by_name(path)
    assert meta == {"source": "test", "color_space": "LINEAR"}
    assert set(grids) == {"density", "color"}
    vdb = OPENVDB
    assert grids["density"].gridClass == vdb.GridClass.FOG_VOLUME
    assert grids["density"].background == 0.0
    assert tuple(grids["color"].background) == (0.5, 0.5, 0.5)
    assert grids["color"].vectorType == vdb.VectorType.INVARIANT
    for name, values, bg, active in (
        ("density", density, 0.0, density != 0.0),
        ("color", colour, (0.5, 0.5, 0.5), (colour != 0.5).any(-1)),
    ):
        g = grids[name]
        expected = {tuple(int(c) for c in ijk + offset): np.atleast_1d(values[tuple(ijk)]) for ijk in np.argwhere(active)}
        assert g.activeVoxelCount() == len(expected)
        found = _active_items(g)
        assert found.keys() == expected.keys()
        assert all(np.array_equal(found[k], expected[k]) for k in expected)  # raw float32: exact
        # Inactive voxels read back as the background, through the reader's dense copy.
        dense = np.zeros(values.shape, np.float32)
        g.copyToArray(dense, ijk=offset)
        mask = active if values.ndim == 3 else active[..., None]
        np.testing.assert_array_equal(dense, np.where(mask, values, np.asarray(bg, np.float32)))
        lo, hi = g.evalActiveVoxelBoundingBox()
        coords = np.array(list(expected))
        assert tuple(lo) == tuple(coords.min(0)) and tuple(hi) == tuple(coords.max(0))
        assert (g.metadata["file_bbox_min"], g.metadata["file_bbox_max"]) == (tuple(lo), tuple(hi))
        assert g.metadata["file_voxel_count"] == len(expected)
        # index→world is the row-vector product with ROWS.
        ijk = np.array([[0, 0, 0], [3, -5, 17], list(offset)], float)
        world = np.c_[ijk, np.ones(3)] @ np.array(ROWS)
        for p, w in zip(ijk, world):
            np.testing.assert_allclose(g.transform.indexToWorld(tuple(p)), w[:3], atol=1e-12)


@pytest.mark.parametrize(
    ("transform", "map_type"),
    [
        (ROWS, "UniformScaleTranslateMap"),
        (([0.5, -0.25, 2.0], [1.0, 2.0, 3.0]), "ScaleTranslateMap"),
        ([[0.0, 0.5, 0.0, 0.0], [-0.25, 0.0, 0.0, 0.0], [0.0, 0.1, 0.5, 0.0], [1.0, 2.0, 3.0, 1.0]], "AffineMap"),
    ],
)
def test_each_transform_reads_as_the_map_it_describes(tmp_path, transform, map_type):
    path = str(tmp_path / "t.vdb")
    write_vdb_file(path, [VdbGrid("d", np.ones((2, 2, 2), np.float32), (0, 0, 0), transform)])
    m = np.asarray(transform, float)
    rows = m if m.shape == (4, 4) else np.r_[np.c_[np.diag(m[0]), np.zeros(3)], [[*m[1], 1.0]]]
    # Blender's index → object matrix (column vectors) is the file's map, every version.
    np.testing.assert_allclose(index_to_world(_load_volume(path), "d"), rows.T, atol=1e-6)
    if OPENVDB is None:
        return
    g = _by_name(path)[0]["d"]
    assert g.transform.typeName == map_type
    rng = np.random.default_rng(1)
    for p in rng.uniform(-50, 50, (5, 3)):
        world = np.append(p, 1.0) @ rows
        np.testing.assert_allclose(g.transform.indexToWorld(tuple(p)), world[:3], atol=1e-9)
        np.testing.assert_allclose(g.transform.worldToIndex(tuple(world[:3])), p, atol=1e-9)


def test_all_background_grids_are_a_valid_file_that_blender_loads(tmp_path):
    path = str(tmp_path / "empty.vdb")
    write_vdb_file(
        path,
        [VdbGrid("density", np.zeros((5, 5, 5), np.float32), (-3, 2, 1), ROWS, 0.0, "fog volume"),
         VdbGrid("color", np.full((5, 5, 5, 3), 0.5, np.float32), (-3, 2, 1), ROWS, (0.5, 0.5, 0.5))],
    )
    vol = _load_volume(path)
    assert {g.name for g in vol.grids} == {"density", "color"}
    assert np.all(sample_voxels(vol, "density", [[-3, 2, 1], [0, 4, 3]]) == 0.0)
    assert np.all(sample_voxels(vol, "color", [[-3, 2, 1], [0, 4, 3]]) == 0.5)  # the background
    if OPENVDB is not None:
        grids, _ = _by_name(path)
        assert {n: g.activeVoxelCount() for n, g in grids.items()} == {"density": 0, "color": 0}
        assert grids["density"].empty() and tuple(grids["color"].background) == (0.5, 0.5, 0.5)


def _openvdb_write(arrays: VdbArrays, path: str) -> str:
    """The reference: the same grids written by OpenVDB itself (the add-on's previous writer)."""
    vdb = OPENVDB
    transform = vdb.createLinearTransform(arrays.index_to_world_rows())
    offset = tuple(int(v) for v in arrays.offset)
    density = vdb.FloatGrid(0.0)
    density.copyFromArray(arrays.density, ijk=offset, tolerance=0.0)
    density.name, density.transform, density.gridClass = DENSITY_GRID, transform, vdb.GridClass.FOG_VOLUME
    bg = float(arrays.color_background)
    colour = vdb.Vec3SGrid((bg, bg, bg))
    colour.copyFromArray(arrays.color, ijk=offset, tolerance=(0.0, 0.0, 0.0))
    colour.name, colour.transform = COLOR_GRID, transform.deepCopy()
    grids = [density, colour]
    for k in range(arrays.sh_rest.shape[2]):  # the higher SH coefficients, from their sparse rows
        dense = np.zeros(arrays.color.shape, np.float32)
        dense[arrays.kept] = arrays.sh_rest[:, :, k]  # boolean indexing visits the mask in C order
        sh = vdb.Vec3SGrid((0.0, 0.0, 0.0))
        sh.copyFromArray(dense, ijk=offset, tolerance=(0.0, 0.0, 0.0))
        sh.name, sh.transform = f"sh{k + 1}", transform.deepCopy()
        grids.append(sh)
    vdb.write(path, grids)
    return path


def _render(scene, vdb_path: str, exr: str, sh_degree: int = 0) -> np.ndarray:
    obj = create_or_update(scene, "Plenoxels", vdb_path, "grid.npz", color_space="TRAINER", sh_degree=sh_degree)
    expected = {"density": "FLOAT", "color": "VECTOR_FLOAT"} | {
        f"sh{k}": "VECTOR_FLOAT" for k in range(1, (sh_degree + 1) ** 2)}
    assert {g.name: g.data_type for g in obj.data.grids} == expected
    return render_linear(scene, exr)


@needs_openvdb  # it writes the reference file
def test_blender_renders_our_file_like_an_openvdb_written_one(empty_scene, tmp_path):
    scene = empty_scene
    grid = random_grid(n=900, res=(14, 12, 10), seed=4)
    arrays = build_vdb_arrays(grid)
    ours = write_vdb(arrays, str(tmp_path / "ours.vdb"))
    theirs = _openvdb_write(arrays, str(tmp_path / "theirs.vdb"))
    # Blender's grid transform: index → object space, the same matrix as the file's (column vectors).
    vol = _load_volume(ours)
    np.testing.assert_allclose(np.array(vol.grids["density"].matrix_object), np.array(arrays.index_to_world_rows()).T, atol=1e-6)
    setup_cycles(scene, 24, 20, samples=4, background=(0.1, 0.2, 0.4))
    ortho_camera(scene, (0.0, 0.1, 3.0), 2.4)
    image_ours = _render(scene, ours, str(tmp_path / "ours.exr"), arrays.sh_degree)
    image_theirs = _render(scene, theirs, str(tmp_path / "theirs.exr"), arrays.sh_degree)
    assert image_ours.std() > 0.05  # the volume is in view and not flat
    value = psnr(image_ours, image_theirs)
    print(f"Cycles, numpy-written vs openvdb-written VDB: {value:.1f} dB")
    assert value > 60.0


def test_a_grey_volume_keeps_its_colour_grid_and_renders_grey(empty_scene, tmp_path):
    """Every DC value 0.5 equals the colour background: density-active voxels keep their colour
    active, so the colour grid is not empty (an empty one renders the volume black)."""
    scene = empty_scene
    res, lo, hi, sigma = 8, 2, 6, 3.0
    write_grid(tmp_path / "grey.npz", cube_grid(res, lo, hi, sigma, (0.5, 0.5, 0.5)))
    result = import_grid(scene, str(tmp_path / "grey.npz"), color_space="TRAINER")
    if OPENVDB is not None:  # elsewhere the render below tells: an empty colour grid renders black
        grids, _ = _by_name(bpy.path.abspath(result.obj.data.filepath))
        assert grids["color"].activeVoxelCount() == grids["density"].activeVoxelCount() == 64
    size, scale = 16, 1.5
    background = np.array([0.1, 0.2, 0.4])
    setup_cycles(scene, size, size, samples=4, background=tuple(background))
    ortho_camera(scene, (0.0, 0.0, 3.0), scale)
    image = render_linear(scene, str(tmp_path / "grey.exr"))
    # Closed form: constant colour 0.5, optical depth σ·h(x)h(y)·∫h(z)dz with ∫h = (hi − lo)·voxel.
    vox = 2.0 / res
    lo_c, hi_c = -1 + (lo + 0.5) * vox, -1 + (hi - 0.5) * vox
    px = (np.arange(size) + 0.5) / size * scale - scale / 2
    hxy = hat_profile(px[None, :], lo_c, hi_c, vox) * hat_profile(-px[:, None], lo_c, hi_c, vox)
    transmittance = np.exp(-sigma * hxy * (hi - lo) * vox)[..., None]
    expected = 0.5 * (1 - transmittance) + background * transmittance
    value = psnr(image, expected)
    print(f"grey cube vs closed form: {value:.2f} dB")
    assert value > 35.0


def test_importing_needs_no_openvdb_binding(empty_scene, tmp_path, monkeypatch):
    """As with Blender 4.2's bpy wheel: no `openvdb` module at all; the import still writes and loads."""
    monkeypatch.setitem(sys.modules, "openvdb", None)  # `import openvdb` raises ImportError
    monkeypatch.setitem(sys.modules, "pyopenvdb", None)
    # (4.2 has no expose_bundled_modules at all: nothing to replace there)
    monkeypatch.setattr(bpy.utils, "expose_bundled_modules", lambda: (_ for _ in ()).throw(ImportError("none")),
                        raising=False)
    write_grid(tmp_path / "cube.npz", cube_grid(8, 2, 6, 3.0, (0.8, 0.3, 0.1)))
    result = import_grid(empty_scene, str(tmp_path / "cube.npz"))
    assert result.active_voxels == 64 and os.path.isfile(result.vdb_path)
    assert {g.name for g in result.obj.data.grids} == {"density", "color"}
