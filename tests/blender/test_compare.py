"""The demo comparison's rebuilt dataset cameras and turntable video, in real Blender.

A 2 cm object seen from 6 cm (a glTF sample model's scale) vanished behind Blender's default clip
start of 0.1 m (issue 9: an empty white comparison image); the rebuilt camera takes its clip range
from the scene box, and its Cycles render of the imported grid matches a closed-form reference.
"""

from __future__ import annotations

import bpy
import numpy as np
import pytest
from grid_helpers import cube_grid
from mp4_boxes import video_tracks
from volume_render_helpers import hat_profile, psnr, render_linear, setup_cycles

from blender_plenox.demo_scene import camera_from_frame, render_turntable, voxel_box_of
from blender_plenox.io.grid_reader import read_grid, write_grid
from blender_plenox.volume.importer import import_grid

HALF = 0.0125  # the grid box: 2.5 cm
RES, LO, HI = 10, 1, 9  # voxels 1..8 active: a 2 cm cube (−0.01 … 0.01 m)
SIGMA = 150.0  # per metre: optical depth 3 across the cube, so its inside shows too
COLOUR = np.array([0.8, 0.3, 0.1])
BACKGROUND = np.array([0.1, 0.2, 0.4])
W, H, FL = 40, 30, 36.0
EYE = np.array([0.04, -0.035, 0.03])  # 6.1 cm from the cube's centre


@pytest.fixture(autouse=True)
def empty_scene():
    bpy.ops.wm.read_factory_settings(use_empty=True)
    yield bpy.context.scene


def look_at(eye: np.ndarray, target=(0.0, 0.0, 0.0)) -> np.ndarray:
    back = (eye - np.asarray(target)) / np.linalg.norm(eye - np.asarray(target))
    right = np.cross([0.0, 0.0, 1.0], back)
    right /= np.linalg.norm(right)
    m = np.eye(4)
    m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3] = right, np.cross(back, right), back, eye
    return m


def two_cm_cube(tmp_path):
    path = tmp_path / "small.npz"
    write_grid(path, cube_grid(RES, LO, HI, SIGMA, COLOUR, aabb=((-HALF,) * 3, (HALF,) * 3)))
    return str(path)


def reference(c2w: np.ndarray) -> np.ndarray:
    """Closed-form emission–absorption render of the trilinear cube through a pinhole at the pixel
    centres: σ(x) = σ·h(x)h(y)h(z), colour 0.5 + (c − 0.5)·h (inactive voxels carry colour 0.5)."""
    vox = 2 * HALF / RES
    lo_c, hi_c = -HALF + (LO + 0.5) * vox, -HALF + (HI - 0.5) * vox
    u, v = np.meshgrid(np.arange(W) + 0.5, np.arange(H) + 0.5)
    d_cam = np.stack([(u - W / 2) / FL, -(v - H / 2) / FL, -np.ones_like(u)], -1)
    d = d_cam @ c2w[:3, :3].T
    d /= np.linalg.norm(d, axis=-1, keepdims=True)
    dist = np.linalg.norm(c2w[:3, 3])
    t = np.linspace(dist - 2 * HALF, dist + 2 * HALF, 3000)
    dt = t[1] - t[0]
    p = c2w[:3, 3] + d[..., None, :] * t[:, None]  # (H, W, T, 3)
    w = hat_profile(p[..., 0], lo_c, hi_c, vox) * hat_profile(p[..., 1], lo_c, hi_c, vox)
    w *= hat_profile(p[..., 2], lo_c, hi_c, vox)
    s = SIGMA * w
    trans = np.exp(-(np.cumsum(s, -1) - s) * dt)
    col = 0.5 + (COLOUR - 0.5) * w[..., None]
    emitted = np.sum((trans * s * dt)[..., None] * col, axis=2)
    return emitted + np.exp(-np.sum(s, -1) * dt)[..., None] * BACKGROUND


def test_rebuilt_camera_sees_a_two_centimetre_scene(empty_scene, tmp_path):
    scene = empty_scene
    grid_path = two_cm_cube(tmp_path)
    import_grid(scene, grid_path, color_space="TRAINER")
    setup_cycles(scene, W, H, samples=8, background=tuple(BACKGROUND))
    c2w = look_at(EYE)
    meta = {"fl_x": FL, "fl_y": FL, "cx": W / 2, "cy": H / 2, "w": W, "h": H,
            "aabb": [[-HALF] * 3, [HALF] * 3], "frames": [{"transform_matrix": c2w.tolist()}]}
    cam = camera_from_frame(scene, meta, meta["frames"][0], read_grid(grid_path).aabb.tolist())
    corners = np.array([[x, y, z] for x in (-HALF, HALF) for y in (-HALF, HALF) for z in (-HALF, HALF)])
    depths = (corners - EYE) @ -c2w[:3, 2]
    assert 0 < cam.data.clip_start < depths.min() < depths.max() < cam.data.clip_end
    assert depths.max() < 0.1  # the whole box lies in front of Blender's default clip start
    image = render_linear(scene, str(tmp_path / "small.exr"))
    expected = reference(c2w)
    value = psnr(image, expected)
    print(f"2 cm cube through the rebuilt camera vs closed form: {value:.2f} dB")
    assert value > 30.0
    assert np.abs(image - BACKGROUND).max() > 0.3  # the cube is there, not just the world colour

    # Blender's default clip start, as before the fix: the whole cube lies in front of it
    cam.data.clip_start, cam.data.clip_end = 0.1, 100.0
    empty = render_linear(scene, str(tmp_path / "clipped.exr"))
    np.testing.assert_allclose(empty, np.broadcast_to(BACKGROUND, empty.shape), atol=2e-3)
    assert psnr(empty, expected) < value - 10


def test_the_datasets_own_near_far_are_kept(empty_scene):
    scene = empty_scene
    c2w = look_at(EYE)
    meta = {"fl_x": FL, "w": W, "h": H, "near": 0.02, "far": 0.5}
    cam = camera_from_frame(scene, meta, {"transform_matrix": c2w.tolist()}, [[-HALF] * 3, [HALF] * 3])
    assert cam.data.clip_start == pytest.approx(0.02) and cam.data.clip_end == pytest.approx(0.5)


@pytest.mark.parametrize("engine", ["CYCLES", "EEVEE"])
def test_turntable_is_an_h264_video_of_the_requested_size_and_length(empty_scene, tmp_path, engine):
    scene = empty_scene
    grid_path = two_cm_cube(tmp_path)
    result = import_grid(scene, grid_path)
    frames, size = 5, (33, 24)  # an odd width: H.264's 4:2:0 chroma wants even sizes
    path = render_turntable(scene, result.obj.name, str(tmp_path / "turn table.mp4"),
                            voxel_box_of(read_grid(grid_path)), result.voxel_size, frames, size,
                            engine=engine, samples=1)
    assert path == str(tmp_path / "turn table.mp4")
    assert sorted(p.name for p in tmp_path.glob("*.mp4")) == ["turn table.mp4"]
    (track,) = video_tracks(path)
    assert (track.codec, track.width, track.height, track.frames) == ("avc1", 34, 24, frames)
