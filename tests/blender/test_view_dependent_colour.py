"""View-dependent colour in the imported volume (contract 4's SH field), in real Blender with Cycles.

References are independent of the add-on's node code: the SH basis in closed form with numpy (checked
against the trainer's own trainer/engine/sh.py in a `.venv` subprocess), and the contract's field integrated
along the ray.
"""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest

from volume_render_helpers import REPO, hat_profile, ortho_camera, render_linear, setup_cycles  # isort: skip

import bpy
from grid_helpers import cube_grid
from mathutils import Vector

from blender_plenox.io.grid_reader import PlenoxGrid, write_grid
from blender_plenox.volume.importer import import_grid
from blender_plenox.volume.sh_nodes import group_name
from blender_plenox.volume.volume_object import NODE_SH

# svox2's constants as the trainer writes them (trainer/engine/sh.py); test_closed_form_is_the_trainers checks them.
C0 = 0.28209479177387814
C1 = 0.4886025119029199
C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792, 0.5462742152960396)
C3 = (-0.5900435899266435, 2.890611442640554, -0.4570457994644658, 0.3731763325901154,
      -0.4570457994644658, 1.445305721320277, -0.5900435899266435)
TRAINER_PYTHON = REPO / ".venv" / "bin" / "python"


def sh_basis(d: np.ndarray, degree: int) -> np.ndarray:
    """The real SH basis (..., K) of unit directions (..., 3), svox2's order and signs."""
    x, y, z = np.moveaxis(np.asarray(d, np.float64), -1, 0)
    xx, yy, zz = x * x, y * y, z * z
    cols = [np.full_like(x, C0)]
    if degree >= 1:
        cols += [-C1 * y, C1 * z, -C1 * x]
    if degree >= 2:
        cols += [C2[0] * x * y, C2[1] * y * z, C2[2] * (2 * zz - xx - yy), C2[3] * x * z, C2[4] * (xx - yy)]
    if degree >= 3:
        cols += [C3[0] * y * (3 * xx - yy), C3[1] * x * y * z, C3[2] * y * (4 * zz - xx - yy),
                 C3[3] * z * (2 * zz - 3 * xx - 3 * yy), C3[4] * x * (4 * zz - xx - yy), C3[5] * z * (xx - yy),
                 C3[6] * x * (xx - 3 * yy)]
    return np.stack(cols, -1)


def _directions(n: int, seed: int) -> np.ndarray:
    d = np.random.default_rng(seed).normal(size=(n, 3))
    return d / np.linalg.norm(d, axis=1, keepdims=True)


def _look_along(cam, d: np.ndarray, distance: float = 3.0) -> None:
    """Puts the camera at −distance·d, looking along d (the rays' direction, camera → scene)."""
    v = Vector(tuple(float(c) for c in d))
    cam.location = -distance * v
    cam.rotation_euler = v.to_track_quat("-Z", "Y").to_euler()


@pytest.fixture(autouse=True)
def empty_scene():
    bpy.ops.wm.read_factory_settings(use_empty=True)
    yield bpy.context.scene


@pytest.mark.skipif(not TRAINER_PYTHON.exists(), reason="no trainer environment (.venv)")
def test_closed_form_is_the_trainers():
    """The numpy basis above is the trainer's sh_basis, to float32 precision, for every degree."""
    dirs = _directions(64, 1)
    code = (
        "import json, sys, torch; from trainer.engine.sh import sh_basis; "
        "d = torch.tensor(json.load(sys.stdin), dtype=torch.float64); "
        "print(json.dumps([sh_basis(d, k).tolist() for k in range(4)]))"
    )
    out = subprocess.run([str(TRAINER_PYTHON), "-c", code], input=json.dumps(dirs.tolist()), cwd=REPO,
                         capture_output=True, text=True, check=True, timeout=120)
    for degree, theirs in enumerate(json.loads(out.stdout)):
        np.testing.assert_allclose(sh_basis(dirs, degree), theirs, atol=1e-12)


def _constant_sh_grid(coeffs: np.ndarray, degree: int, sigma: float = 40.0) -> PlenoxGrid:
    """Voxels 2..5 of an 8³ grid over [−1, 1]³ with density σ, in a shell of voxels 1..6 of density 0,
    all holding the same coefficients: wherever σ > 0 every trilinear corner is a shell or inner voxel,
    so the interpolated coefficients are exactly `coeffs` and c(x, d) = max(0, Σ Y_k(d)·coeffs + 0.5)."""
    res = 8
    idx = np.stack(np.meshgrid(*[np.arange(res)] * 3, indexing="ij"), -1).reshape(-1, 3)
    inner = ((idx >= 2) & (idx <= 5)).all(1)
    shell = ((idx >= 1) & (idx <= 6)).all(1)
    coords = idx[shell].astype(np.int32)
    density = np.where(inner[shell], sigma, 0.0).astype(np.float32)
    sh = np.repeat(coeffs[None].astype(np.float32), len(coords), 0)
    return PlenoxGrid(np.array([res] * 3), np.array([[-1.0] * 3, [1.0] * 3]), coords, density, sh, degree)


@pytest.mark.parametrize("degree", [1, 2, 3])
def test_sh_colour_matches_the_trainers_closed_form(empty_scene, tmp_path, degree):
    """An opaque block of constant random coefficients seen along random directions (orthographic,
    through its middle: optical depth 40, so the pixel is the colour) shows max(0, Σ Y_k(d)·c_k + 0.5)
    per channel, and not the colour of the opposite direction (the sign of d)."""
    scene = empty_scene
    k = (degree + 1) ** 2
    coeffs = np.random.default_rng(10 + degree).normal(0.0, 0.6, (3, k))  # some channels clamp at 0
    write_grid(tmp_path / "sh.npz", _constant_sh_grid(coeffs, degree))
    result = import_grid(scene, str(tmp_path / "sh.npz"), color_space="TRAINER")
    assert result.shown_degree == degree
    assert sorted(g.name for g in result.obj.data.grids) == sorted(
        ["density", "color"] + [f"sh{i}" for i in range(1, k)])
    setup_cycles(scene, 2, 2, samples=4)
    cam = ortho_camera(scene, (0.0, 0.0, 3.0), 0.2)
    dirs = _directions(6, 20 + degree)
    errors, flipped = [], []
    for d in dirs:
        _look_along(cam, d)
        pixel = render_linear(scene, str(tmp_path / "v.exr")).reshape(-1, 3).mean(0)
        expected = np.maximum(coeffs @ sh_basis(d, degree) + 0.5, 0.0)
        errors.append(np.abs(pixel - expected).max())
        flipped.append(np.abs(pixel - np.maximum(coeffs @ sh_basis(-d, degree) + 0.5, 0.0)).max())
    print(f"SH degree {degree}: Cycles vs closed form, max abs colour error {max(errors):.2e} over {len(dirs)} views")
    assert max(errors) < 2e-3
    assert min(flipped) > 0.05  # the view direction's sign matters and is the trainer's


def test_one_group_per_degree_shared_by_volumes(empty_scene, tmp_path):
    rng = np.random.default_rng(3)
    for name in ("a", "b"):
        write_grid(tmp_path / f"{name}.npz", _constant_sh_grid(rng.normal(0, 0.3, (3, 4)), 1))
    first = import_grid(empty_scene, str(tmp_path / "a.npz"), object_name="A")
    second = import_grid(empty_scene, str(tmp_path / "b.npz"), object_name="B")
    assert first.obj.active_material == second.obj.active_material
    assert first.obj.active_material.node_tree.nodes[NODE_SH].node_tree.name == group_name(1)
    assert [g.name for g in bpy.data.node_groups] == [group_name(1)]
    light = import_grid(empty_scene, str(tmp_path / "a.npz"), object_name="C", view_dependent=False)
    assert light.shown_degree == 0 and light.sh_degree == 1
    assert sorted(g.name for g in light.obj.data.grids) == ["color", "density"]
    assert NODE_SH not in light.obj.active_material.node_tree.nodes


def _six_views(scene, tmp_path, ortho_scale: float) -> np.ndarray:
    """Mean pixel colour seen from +x, −x, +y, −y, +z, −z (orthographic, through the middle)."""
    cam = ortho_camera(scene, (0.0, 0.0, 3.0), ortho_scale)
    out = []
    for axis in range(3):
        for sign in (1.0, -1.0):
            d = np.zeros(3)
            d[axis] = -sign  # seen from the + side: the rays travel along −axis
            _look_along(cam, d)
            out.append(render_linear(scene, str(tmp_path / "six.exr")).reshape(-1, 3).mean(0))
    return np.array(out)


@pytest.mark.parametrize("view_dependent", [True, False])
def test_uniform_cube_has_one_colour_from_all_six_sides(empty_scene, tmp_path, view_dependent):
    """16³ voxels over 1 m, density 200 per metre, one colour: the same from all six sides within 0.01,
    and the contract's field: along an axis through the middle σ(s) = 200·h(s), c(s) = 0.5 + (c − 0.5)·h(s)
    (h: the trilinear profile, which blends towards an inactive voxel's 0.5 outside the cube on every
    side alike)."""
    scene = empty_scene
    colour = np.array([0.5, 0.3, 0.3])
    grid = cube_grid(16, 0, 16, 200.0, colour, aabb=((-0.5,) * 3, (0.5,) * 3))
    if view_dependent:  # degree 1 with zero higher coefficients: the SH path must give the same
        grid = PlenoxGrid(grid.resolution, grid.aabb, grid.coords, grid.density,
                          np.concatenate([grid.sh, np.zeros((len(grid.sh), 3, 3), np.float32)], 2), 1)
    write_grid(tmp_path / "cube.npz", grid)
    import_grid(scene, str(tmp_path / "cube.npz"), color_space="TRAINER")
    setup_cycles(scene, 4, 4, samples=16)
    views = _six_views(scene, tmp_path, 0.2)
    vox = 1.0 / 16
    s = np.linspace(-0.6, 0.6, 240001)
    ds = s[1] - s[0]
    h = hat_profile(s, -0.5 + 0.5 * vox, 0.5 - 0.5 * vox, vox)
    sigma = 200.0 * h
    trans = np.exp(-(np.cumsum(sigma) * ds - sigma * ds))
    expected = np.sum((trans * sigma)[:, None] * (0.5 + (colour - 0.5)[None] * h[:, None]), 0) * ds
    spread = np.abs(views - views.mean(0)).max()
    error = np.abs(views - expected).max()
    print(f"uniform cube (view_dependent={view_dependent}): six sides {views[:, 1].round(4).tolist()} (G), "
          f"spread {spread:.4f}, vs closed form {expected.round(4).tolist()}: {error:.4f}")
    assert np.ptp(views, axis=0).max() < 0.01
    assert error < 0.01


def test_grey_cube_renders_grey(empty_scene, tmp_path):
    """DC coefficient 0 everywhere (colour 0.5, the colour grid's background) is grey, not black."""
    scene = empty_scene
    write_grid(tmp_path / "grey.npz", cube_grid(8, 2, 6, 60.0, (0.5, 0.5, 0.5)))
    import_grid(scene, str(tmp_path / "grey.npz"), color_space="TRAINER")
    setup_cycles(scene, 4, 4, samples=8)
    views = _six_views(scene, tmp_path, 0.2)
    np.testing.assert_allclose(views, 0.5, atol=2e-3)
