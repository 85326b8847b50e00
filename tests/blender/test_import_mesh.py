"""Import as Mesh: the surface against an analytic sphere, its colours against the closed form, the
material in a Cycles render, the operator and `batch.py --import-as mesh`.

The sphere grid: res³ voxels over [−1, 1]³ (voxel h), each holding σ_L·(1 + (R − r)/(2h)) (clamped at
0), r the distance of its sample point (cell centre) from an off-grid centre c, σ_L the density of
opacity 0.5. Along any line the values are linear in r over two voxels either side of r = R, so the
level set σ = σ_L of their trilinear interpolation is the sphere r = R up to the curvature of r along
a cell edge (h²/(8R)) and OpenVDB's placing of a vertex per cell at the mean of its edge crossings
(inside the sphere by at most ρ²/(2R), ρ ≤ √3·h/2, i.e. 3h²/(8R)): with h = 1/16 and R = 0.55 both
together stay under 0.06 voxel. The bound below is 0.25 voxel; a surface half a voxel off along
(1, 1, 1) (the renderers' offset before Blender 5.0, compat) reaches 0.87 voxel, one voxel off 1.0.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from volume_render_helpers import REPO, ortho_camera, render_linear, setup_cycles  # isort: skip

import bpy
from grid_helpers import sh_for_color

from blender_plenox.io.field_sampling import SH_C1, density_for_opacity
from blender_plenox.io.grid_reader import SH_C0, PlenoxGrid, write_grid
from blender_plenox.volume.mesh_importer import COLOR_ATTRIBUTE, import_grid_as_mesh, vertex_arrays
from blender_plenox.volume.volume_object import COLLECTION_NAME

RES = 32
H = 2.0 / RES
CENTRE = np.array([0.1, -0.05, 0.03])
RADIUS = 0.55
DISTANCE_BOUND = 0.25  # voxels; derivation in the module docstring
CENTROID_BOUND = 0.15  # voxels per axis: the vertices' mean against the sphere's centre
DC_SLOPE = np.array([0.3, -0.4, 0.25])  # the DC colour's gradient per axis (R from x, G from y, B from z)
SH1 = np.array([[0.3, -0.2, 0.1], [0.2, 0.4, -0.3], [-0.1, 0.2, 0.3]])  # per channel: k1, k2, k3


def sphere_grid(sh_degree: int = 0, outside: float = 0.0) -> PlenoxGrid:
    """outside: also keep the voxels whose formula value is down to −outside·σ_L (2h per σ_L outside
    the onset), so that the colour is defined all along a ray that starts before the onset."""
    r = np.arange(RES)
    ijk = np.stack(np.meshgrid(r, r, r, indexing="ij"), -1).reshape(-1, 3)
    centres = -1.0 + (ijk + 0.5) * H
    level = density_for_opacity(0.5, H)
    density = level * (1.0 + (RADIUS - np.linalg.norm(centres - CENTRE, axis=1)) / (2.0 * H))
    keep = density > -outside * level
    rgb = 0.5 + (centres[keep] - CENTRE) * DC_SLOPE  # linear in space: trilinear interpolation is exact
    sh = sh_for_color(rgb, sh_degree)
    if sh_degree:
        sh[:, :, 1:4] = SH1
    return PlenoxGrid(np.array([RES] * 3), np.array([[-1.0] * 3, [1.0] * 3]), ijk[keep].astype(np.int32),
                      density[keep].astype(np.float32), sh, sh_degree)


def expected_colour(points: np.ndarray, view_dirs: np.ndarray | None) -> np.ndarray:
    """Contract 4's colour of the sphere grid: the DC part is linear in space, the degree-1 part constant."""
    c = 0.5 + (points - CENTRE) * DC_SLOPE
    if view_dirs is not None:
        x, y, z = view_dirs.T
        c = c + SH_C1 * (-y[:, None] * SH1[:, 0] + z[:, None] * SH1[:, 1] - x[:, None] * SH1[:, 2])
    return np.maximum(c, 0.0)


def srgb_to_linear(c: np.ndarray) -> np.ndarray:
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def sphere_errors(points: np.ndarray) -> tuple[float, np.ndarray]:
    """(largest |r − R|, centroid offset), in voxels."""
    r = np.linalg.norm(points - CENTRE, axis=1)
    return float(np.abs(r - RADIUS).max() / H), (points.mean(0) - CENTRE) / H


def on_sphere(points: np.ndarray) -> bool:
    worst, centroid = sphere_errors(points)
    return worst <= DISTANCE_BOUND and bool(np.all(np.abs(centroid) <= CENTROID_BOUND))


@pytest.fixture()
def empty_scene():
    bpy.ops.wm.read_factory_settings(use_empty=True)
    return bpy.context.scene


def test_surface_lies_on_the_analytic_sphere(empty_scene, tmp_path):
    write_grid(tmp_path / "ball.npz", sphere_grid())
    result = import_grid_as_mesh(empty_scene, str(tmp_path / "ball.npz"), opacity=0.5, color_space="TRAINER")
    obj = result.obj
    assert obj.type == "MESH" and obj.name == "Plenoxels Mesh"
    assert obj.name in bpy.data.collections[COLLECTION_NAME].objects
    np.testing.assert_allclose(np.array(obj.matrix_world), np.eye(4), atol=0)
    points, normals = vertex_arrays(obj.data)
    assert len(points) > 1000 and result.faces > 1000
    worst, centroid = sphere_errors(points)
    assert worst <= DISTANCE_BOUND, f"vertices up to {worst:.3f} voxels off the sphere"
    assert np.all(np.abs(centroid) <= CENTROID_BOUND), f"centroid {centroid} voxels off"
    # the same vertices half a voxel (the pre-5.0 render offset) or one voxel off would fail
    assert not on_sphere(points + 0.5 * H)
    assert not on_sphere(points + [H, 0.0, 0.0])
    # faces face out of the dense side
    radial = (points - CENTRE) / np.linalg.norm(points - CENTRE, axis=1, keepdims=True)
    assert np.min(np.sum(normals * radial, axis=1)) > 0.95
    # no temporary objects, volumes or meshes left behind
    assert [o.name for o in bpy.data.objects] == [obj.name]
    assert len(bpy.data.volumes) == 0 and [m.name for m in bpy.data.meshes] == [obj.data.name]


def test_a_hollow_shell_gives_its_outer_surface_only(empty_scene, tmp_path):
    # what pruning leaves of a solid no camera saw inside: a shell 4 voxels thick around a void
    grid = sphere_grid()
    r = np.linalg.norm(grid.sample_points() - CENTRE, axis=1)
    hollow = PlenoxGrid(grid.resolution, grid.aabb, grid.coords[r > RADIUS - 4 * H], grid.density[r > RADIUS - 4 * H],
                        grid.sh[r > RADIUS - 4 * H], 0)
    write_grid(tmp_path / "shell.npz", hollow)
    outer = import_grid_as_mesh(empty_scene, str(tmp_path / "shell.npz"), opacity=0.5)
    assert on_sphere(vertex_arrays(outer.obj.data)[0])
    both = import_grid_as_mesh(empty_scene, str(tmp_path / "shell.npz"), opacity=0.5, fill_voids=False)
    inner = np.linalg.norm(vertex_arrays(both.obj.data)[0] - CENTRE, axis=1) < RADIUS - 2 * H
    assert inner.sum() > 0.15 * outer.vertices  # the void's wall (radius ≈ R − 4h), left out above


def test_reimport_replaces_the_mesh(empty_scene, tmp_path):
    write_grid(tmp_path / "ball.npz", sphere_grid())
    first = import_grid_as_mesh(empty_scene, str(tmp_path / "ball.npz"), opacity=0.5)
    again = import_grid_as_mesh(empty_scene, str(tmp_path / "ball.npz"), opacity=0.9)
    assert again.obj == first.obj and len(bpy.data.meshes) == 1
    # a higher opacity lies deeper in the ramp: σ grows by 2·σ_L per voxel inwards
    points, _ = vertex_arrays(again.obj.data)
    depth = (density_for_opacity(0.9, H) / density_for_opacity(0.5, H) - 1.0) * 2.0 * H
    r = np.linalg.norm(points - CENTRE, axis=1)
    assert np.abs(r - (RADIUS - depth)).max() <= DISTANCE_BOUND * H


def rendered_depth(opacity: float) -> float:
    """How deep below the vertex (world units, along the inward normal) the light a ray looking at
    the sphere loses lies on average, the ray running from 2 voxels outside the vertex to 10 inside
    (surface_colour): weights σ·exp(−∫σ) of the ramp σ = σ_L·(1 + s/(2h)), s inward from r = R,
    integrated finely; the vertex lies where σ is the level of `opacity`."""
    level = density_for_opacity(opacity, H)
    sigma_half = density_for_opacity(0.5, H)
    vertex = 2 * H * (level / sigma_half - 1.0)  # its s
    s = np.linspace(vertex - 2 * H, vertex + 10 * H, 200_001)
    sigma = np.maximum(sigma_half * (1.0 + s / (2 * H)), 0.0)
    tau = np.concatenate([[0.0], np.cumsum(0.5 * (sigma[1:] + sigma[:-1]) * np.diff(s))])
    weights = sigma * np.exp(-tau)
    return float(np.sum(s * weights) / np.sum(weights)) - vertex


@pytest.mark.parametrize("view_dependent", [False, True])
def test_vertex_colours_are_the_fields(empty_scene, tmp_path, view_dependent):
    """Each vertex shows the colour a ray looking straight at it renders: the DC colour is linear in
    space, so it is the colour at the light's mean depth below the vertex, plus the view-dependent
    part (constant) seen along −normal."""
    write_grid(tmp_path / "ball.npz", sphere_grid(sh_degree=1, outside=1.0))
    # at a low opacity the vertices lie 1.7 voxels outside r = R, where the ray's light is not lost yet
    result = import_grid_as_mesh(empty_scene, str(tmp_path / "ball.npz"), opacity=0.1, color_space="TRAINER",
                                 view_dependent=view_dependent)
    mesh = result.obj.data
    assert result.view_dependent == view_dependent
    points, normals = vertex_arrays(mesh)
    attr = mesh.color_attributes[COLOR_ATTRIBUTE]
    assert (attr.data_type, attr.domain) == ("FLOAT_COLOR", "POINT")
    rgba = np.empty(len(points) * 4, np.float32)
    attr.data.foreach_get("color", rgba)
    rgba = rgba.reshape(-1, 4)
    # baked looking straight at the surface: the camera ray's direction is −normal; 0.01 is the DC
    # colour's change over 0.4 voxel of depth
    depth = rendered_depth(0.1)
    expect = expected_colour(points - depth * normals, -normals if view_dependent else None)
    np.testing.assert_allclose(rgba[:, :3], expect, atol=0.01)
    at_vertex = expected_colour(points, -normals if view_dependent else None)
    assert depth > H and np.abs(at_vertex - expect).max() > 0.03  # not the colour at the vertex
    np.testing.assert_allclose(rgba[:, 3], 1.0, atol=0)
    if view_dependent:  # the view-dependent part matters here (it is not the DC colour)
        assert np.abs(expect - expected_colour(points, None)).max() > 0.1
    # scene-linear colours: sRGB decoded after the clamp
    linear = import_grid_as_mesh(empty_scene, str(tmp_path / "ball.npz"), opacity=0.1, color_space="LINEAR",
                                 view_dependent=view_dependent).obj.data
    linear.color_attributes[COLOR_ATTRIBUTE].data.foreach_get("color", rgba.ravel())
    np.testing.assert_allclose(rgba[:, :3], srgb_to_linear(expect), atol=0.01)


def test_cycles_shows_the_colour_attribute(empty_scene, tmp_path):
    # a uniform colour: every pixel on the sphere shows it, unlit (emission), off it the black world
    grid = sphere_grid(outside=1.0)
    grid.sh[:, :, 0] = (np.array([0.8, 0.3, 0.1]) - 0.5) / SH_C0
    write_grid(tmp_path / "ball.npz", grid)
    import_grid_as_mesh(empty_scene, str(tmp_path / "ball.npz"), opacity=0.5, color_space="TRAINER")
    setup_cycles(empty_scene, 12, 12, samples=1)
    ortho_camera(empty_scene, (*CENTRE[:2], 3.0), scale=1.5)
    img = render_linear(empty_scene, str(tmp_path / "mesh.exr"))
    np.testing.assert_allclose(img[4:8, 4:8].reshape(-1, 3), np.tile([0.8, 0.3, 0.1], (16, 1)), atol=2e-3)
    np.testing.assert_allclose(img[0, 0], 0.0, atol=1e-3)


def test_operator_imports_a_mesh_and_refuses_a_level_with_no_surface(registered_scene, tmp_path):
    write_grid(tmp_path / "ball.npz", sphere_grid())
    s = registered_scene.plenox.import_settings
    s.import_as, s.surface_opacity = "MESH", 0.5
    assert bpy.ops.plenox.import_mesh(filepath=str(tmp_path / "ball.npz")) == {"FINISHED"}
    assert "Plenoxels Mesh" in bpy.data.objects and s.status.startswith("Imported a surface of ")
    before = len(bpy.data.objects["Plenoxels Mesh"].data.vertices)
    s.surface_opacity = 0.999  # σ = 110 per unit, far above the sphere's peak (60)
    with pytest.raises(RuntimeError, match="no surface"):
        bpy.ops.plenox.import_mesh(filepath=str(tmp_path / "ball.npz"))
    assert len(bpy.data.objects["Plenoxels Mesh"].data.vertices) == before and "no surface" in s.status


def test_a_finished_training_imports_as_the_import_panel_says(registered_scene, tmp_path):
    from blender_plenox.operators.train import _import

    write_grid(tmp_path / "ball.npz", sphere_grid())
    s = registered_scene.plenox.import_settings
    s.import_as, s.surface_opacity = "MESH", 0.5
    assert _import(bpy.context, str(tmp_path / "ball.npz")) == ""  # a live preview: always a Volume
    assert [o.type for o in bpy.data.objects] == ["VOLUME"]
    assert _import(bpy.context, str(tmp_path / "ball.npz"), final=True) == ""  # the result: Import As
    assert "Plenoxels Mesh" in bpy.data.objects and bpy.data.objects["Plenoxels Mesh"].type == "MESH"


def test_batch_import_as_mesh(empty_scene, tmp_path: Path):
    write_grid(tmp_path / "ball.npz", sphere_grid())
    blend = tmp_path / "out.blend"
    script = REPO / "blender_plenox" / "batch.py"
    run = [sys.executable, str(script), "--", "--no-capture", "--out", str(tmp_path / "ds"),
           "--grid", str(tmp_path / "ball.npz"), "--import-as", "mesh", "--surface-opacity", "0.5",
           "--save", str(blend)]
    proc = subprocess.run(run, cwd=tmp_path, capture_output=True, text=True, check=False, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Imported a surface of " in proc.stdout
    bpy.ops.wm.open_mainfile(filepath=str(blend))
    points, _ = vertex_arrays(bpy.data.objects["Plenoxels Mesh"].data)
    assert on_sphere(points)
    helped = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, check=False)
    assert "--import-as {volume,mesh}" in helped.stdout and "--surface-opacity" in helped.stdout


def test_batch_imports_a_grid_into_a_blend_without_capturing(empty_scene, tmp_path: Path):
    write_grid(tmp_path / "ball.npz", sphere_grid())
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "scene.blend"))
    blend = tmp_path / "out.blend"
    script = REPO / "blender_plenox" / "batch.py"
    run = [sys.executable, str(script), "--blend", str(tmp_path / "scene.blend"), "--",
           "--import", "--grid", str(tmp_path / "ball.npz"), "--save", str(blend)]
    proc = subprocess.run(run, cwd=tmp_path, capture_output=True, text=True, check=False, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Imported " in proc.stdout and not (tmp_path / "dataset").exists()
    bpy.ops.wm.open_mainfile(filepath=str(blend))
    assert bpy.data.objects["Plenoxels"].type == "VOLUME"


def open_box_grid(dataset: Path) -> PlenoxGrid:
    """A box shell two voxels thick, closed on top and on the four sides but open underneath, with a
    wall inside it (the plane x = 0, from the open bottom halfway up): what a trained object on a base
    can look like, its hollow open through the bottom no camera saw. Under it, down to z = −0.75, faint
    density below the surface's level (as training leaves around what rays saw), which moves the
    block's bottom far below the box's. Its grid names `dataset` as the trainer's data, where cameras
    above it all round look at it."""
    r = np.arange(RES)
    ijk = np.stack(np.meshgrid(r, r, r, indexing="ij"), -1).reshape(-1, 3)
    p = -1.0 + (ijk + 0.5) * H
    lo, hi = np.array([-0.5, -0.5, -0.4]), np.array([0.5, 0.5, 0.5])
    inner_lo, inner_hi = lo + 2 * H, hi - 2 * H
    inner_lo[2] = -2.0
    inside_inner = np.all((p > inner_lo) & (p < inner_hi), axis=1)
    shell = np.all((p > lo) & (p < hi), axis=1) & ~inside_inner
    shell |= inside_inner & (np.abs(p[:, 0]) < H) & (p[:, 2] > lo[2]) & (p[:, 2] < 0.05)
    faint = np.all(np.abs(p[:, :2]) < 0.5, axis=1) & (p[:, 2] < lo[2]) & (p[:, 2] > -0.75)
    keep = shell | faint
    level = density_for_opacity(0.3, H)
    density = np.where(shell[keep], 4.0 * level, 0.02 * level).astype(np.float32)  # too faint to stop a ray
    frames = []
    for elevation in (0.3, 0.8, 1.4):
        for k in range(8):
            a = 2 * np.pi * k / 8
            eye = 3.5 * np.array([np.cos(a) * np.cos(elevation), np.sin(a) * np.cos(elevation), np.sin(elevation)])
            forward = -eye / np.linalg.norm(eye)
            x = np.cross(forward, [0.0, 0.0, 1.0])
            x /= np.linalg.norm(x)
            m = np.eye(4)
            m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3] = x, np.cross(x, forward), -forward, eye
            frames.append({"file_path": f"./train/r_{len(frames)}", "transform_matrix": m.tolist()})
    dataset.mkdir()
    meta = {"fl_x": 62.4, "fl_y": 62.4, "cx": 24.0, "cy": 24.0, "w": 48, "h": 48, "frames": frames}
    (dataset / "transforms_train.json").write_text(json.dumps(meta))
    return PlenoxGrid(np.array([RES] * 3), np.array([[-1.0] * 3, [1.0] * 3]), ijk[keep].astype(np.int32), density,
                      sh_for_color(np.full((len(density), 3), 0.5), 0), 0, {"data": str(dataset)})


def test_surfaces_no_training_camera_reaches_are_left_out(empty_scene, tmp_path):
    write_grid(tmp_path / "box.npz", open_box_grid(tmp_path / "dataset"))

    def inside(points: np.ndarray) -> np.ndarray:
        """More than 1.5 voxels inside the box's side walls and top and above its bottom: the inner
        wall and the shell's inner faces (the level lies within a voxel of the walls)."""
        return np.min(np.concatenate([points - [-0.5, -0.5, -0.4], [0.5, 0.5, 0.5] - points], axis=1), axis=1) > 1.5 * H

    # with the cameras: the outer faces only, and the underside that closes the hollow they cannot see
    outer = vertex_arrays(import_grid_as_mesh(empty_scene, str(tmp_path / "box.npz"), opacity=0.3).obj.data)[0]
    assert not inside(outer).any()
    assert np.all(np.abs(outer[:, :2]) < 0.5 + H) and np.all(outer[:, 2] < 0.5 + H)
    # the underside closes flush with the walls' bottom, where the cameras' view of them ends (their
    # level set there: z = −0.40625 + h·(1 − 0.02)/(4 − 0.02) = −0.391), not at the block's bottom 6
    # voxels below it
    under = outer[np.all(np.abs(outer[:, :2]) < 0.5 - 3 * H, axis=1) & (outer[:, 2] < 0.0)]
    assert len(under) > 50 and np.all(np.abs(under[:, 2] + 0.391) < 0.5 * H)
    assert np.all(outer[:, 2] > -0.4 - H)
    # without them (as for a grid whose dataset is gone): the inner wall and the shell's inner faces
    both = vertex_arrays(import_grid_as_mesh(empty_scene, str(tmp_path / "box.npz"), opacity=0.3,
                                             remove_hidden=False).obj.data)[0]
    assert inside(both).sum() > 0.3 * len(both)
    (tmp_path / "dataset" / "transforms_train.json").unlink()
    gone = vertex_arrays(import_grid_as_mesh(empty_scene, str(tmp_path / "box.npz"), opacity=0.3).obj.data)[0]
    assert len(gone) == len(both)
