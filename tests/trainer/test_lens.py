"""Lens distortion: the trainer's rays through distorted pixels hit the points that project there.

The reference is written here, independently of trainer/io/lens.py, in numpy float64: a world point is
projected with the pinhole model (OpenCV camera axes), distorted with the forward model as OpenCV /
COLMAP / nerfstudio define it, and mapped to pixels. The trainer's ray for that pixel position must
pass through the point; its direction, projected and distorted again by the reference, must land
within 0.01 px of the pixel.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from scenes import look_at, write_sphere_dataset

from trainer.io.data import DatasetError, camera_rays, load_dataset
from trainer.io.lens import pixel_directions

MAX_PX = 0.01


def distort_opencv(x: np.ndarray, y: np.ndarray, k1: float, k2: float, k3: float, k4: float, p1: float,
                   p2: float) -> tuple[np.ndarray, np.ndarray]:
    """OpenCV's radial-tangential model, with nerfstudio's 8th-order k4 (radial as a sum of powers)."""
    r2 = x**2 + y**2
    radial = 1 + k1 * r2 + k2 * r2**2 + k3 * r2**3 + k4 * r2**4
    return (x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x**2),
            y * radial + p1 * (r2 + 2 * y**2) + 2 * p2 * x * y)


def project(points: np.ndarray, c2w: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Pixel positions (u right, v down, pixel centres at +0.5) of world points [N, 3] through the
    camera k = fx, fy, cx, cy[, k1, k2, k3, k4, p1, p2, model]; model 1 is the equidistant fisheye."""
    w2c = np.linalg.inv(c2w)
    cam = (points @ w2c[:3, :3].T + w2c[:3, 3]) * np.array([1.0, -1.0, -1.0])   # OpenGL -> OpenCV axes
    fx, fy, cx, cy = k[:4]
    if len(k) > 4 and k[10] == 1:
        r = np.hypot(cam[:, 0], cam[:, 1])
        theta = np.arctan2(r, cam[:, 2])                 # angle from the optical axis, beyond 90 too
        t2 = theta**2
        theta_d = theta * (1 + k[4] * t2 + k[5] * t2**2 + k[6] * t2**3 + k[7] * t2**4)
        xd, yd = theta_d * cam[:, 0] / r, theta_d * cam[:, 1] / r
    else:
        assert (cam[:, 2] > 0).all()
        x, y = cam[:, 0] / cam[:, 2], cam[:, 1] / cam[:, 2]
        xd, yd = distort_opencv(x, y, *k[4:10]) if len(k) > 4 else (x, y)
    return np.stack([fx * xd + cx, fy * yd + cy], axis=1)


def reprojection_px(points: np.ndarray, origins: np.ndarray, dirs: np.ndarray, c2w: np.ndarray, k: np.ndarray,
                    target: np.ndarray) -> np.ndarray:
    """How far from `target` the rays' own projections land (a point far along each ray)."""
    assert np.allclose(origins, c2w[:3, 3], atol=1e-5)
    return np.linalg.norm(project(origins + 50.0 * dirs, c2w, k) - target, axis=1)


def distance_to_rays(points: np.ndarray, origins: np.ndarray, dirs: np.ndarray) -> np.ndarray:
    v = points - origins
    along = np.sum(v * dirs, axis=1)
    assert (along > 0).all()
    return np.linalg.norm(v - along[:, None] * dirs, axis=1)


POSE = look_at(np.array([2.0, -2.5, 1.0]), np.array([0.1, 0.2, -0.1]))
LENSES = {
    # instant-ngp's fox (colmap2nerf OPENCV: k1 k2 p1 p2), at its own 1080x1920 resolution
    "fox": [1375.52, 1374.49, 554.558, 965.268, 0.0578421, -0.0805099, 0, 0, -0.000980296, 0.00015575, 0],
    # strong barrel with every radial term, nerfstudio's k4 included
    "barrel": [400.0, 410.0, 330.0, 250.0, -0.28, 0.07, 0.01, -0.002, 0.0012, -0.0009, 0],
    # OpenCV fisheye (equidistant, k1..k4), a wide lens
    "fisheye": [300.0, 305.0, 640.0, 480.0, 0.05, -0.01, 0.003, -0.0005, 0, 0, 1],
    # fisheye with all coefficients zero: the pure equidistant projection, not a pinhole
    "equidistant": [300.0, 300.0, 640.0, 480.0, 0, 0, 0, 0, 0, 0, 1],
}


def points_in_view(lens: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """World points whose undistorted normalised coordinates stay inside the lens's calibrated field."""
    fisheye = LENSES[lens][10] == 1
    half_angle = np.radians(80 if fisheye else 30)
    theta = half_angle * np.sqrt(rng.uniform(0, 1, n))
    phi = rng.uniform(0, 2 * np.pi, n)
    depth = rng.uniform(1.0, 4.0, n)
    cam_cv = np.stack([np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi), np.cos(theta)], 1) * depth[:, None]
    cam_gl = cam_cv * np.array([1.0, -1.0, -1.0])
    return cam_gl @ POSE[:3, :3].T + POSE[:3, 3]


@pytest.mark.parametrize("lens", sorted(LENSES))
def test_ray_through_a_distorted_pixel_hits_the_point(lens: str) -> None:
    rng = np.random.default_rng(7)
    k = np.asarray(LENSES[lens], dtype=np.float64)
    points = points_in_view(lens, 400, rng)
    uv = project(points, POSE, k)
    d_cam = pixel_directions(torch.tensor(k, dtype=torch.float32), torch.tensor(uv[:, 0], dtype=torch.float32),
                             torch.tensor(uv[:, 1], dtype=torch.float32)).double().numpy()
    dirs = d_cam @ POSE[:3, :3].T
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    origins = np.broadcast_to(POSE[:3, 3], dirs.shape)
    assert reprojection_px(points, origins, dirs, POSE, k, uv).max() < MAX_PX
    # and the ray itself passes through the point: 0.01 px at the point's depth, or better
    assert (distance_to_rays(points, origins, dirs) < 1e-5 * np.linalg.norm(points - origins, axis=1) + 1e-6).all()


@pytest.mark.parametrize("lens", ["barrel", "fisheye"])
def test_camera_rays_with_lenses_per_view(lens: str) -> None:
    """The full path: views of two different lenses and a pinhole among them, each point moved onto a
    pixel centre by shifting that view's principal point (which shifts its distorted projection by
    exactly as much, distortion acting before the principal point is added)."""
    rng = np.random.default_rng(3)
    base = np.asarray(LENSES[lens], dtype=np.float64)
    other = base.copy()
    other[4] *= 0.5
    pinhole = np.zeros(11)
    pinhole[:4] = base[:4]
    ks, points = [], []
    for view, k in enumerate([base, other, pinhole, base]):
        p = points_in_view(lens if view != 2 else "barrel", 1, rng)[0]
        uv = project(p[None], POSE, k)[0]
        k = k.copy()
        k[2:4] += np.floor(uv) + 0.5 - uv
        ks.append(k)
        points.append(p)
    width, height = 1280, 960
    c2w = torch.tensor(np.stack([POSE] * 4), dtype=torch.float32)
    origins, dirs = camera_rays(c2w, torch.tensor(np.stack(ks), dtype=torch.float32), width, height)
    for view, (k, p) in enumerate(zip(ks, points)):
        u, v = (np.floor(project(p[None], POSE, k)[0])).astype(int)
        assert 0 <= u < width and 0 <= v < height
        i = (view * height + v) * width + u
        o, d = origins[i].double().numpy()[None], dirs[i].double().numpy()[None]
        assert reprojection_px(p[None], o, d, POSE, k, np.array([[u + 0.5, v + 0.5]]))[0] < MAX_PX
        assert distance_to_rays(p[None], o, d)[0] < 1e-5 * float(np.linalg.norm(p - POSE[:3, 3]))


# --- the loader: keys as colmap2nerf and nerfstudio write them ------------------------------------


@pytest.fixture()
def sphere(tmp_path: Path) -> Path:
    write_sphere_dataset(tmp_path, n_train=3, n_test=1, width=40, height=30, shift=(1.5, -2.0))
    return tmp_path


def edit(path: Path, change) -> None:  # type: ignore[no-untyped-def]
    meta = json.loads(path.read_text())
    change(meta)
    path.write_text(json.dumps(meta))


def test_loader_reads_lens_keys_file_level_and_per_frame(sphere: Path) -> None:
    train = sphere / "transforms_train.json"
    # colmap2nerf's OPENCV: k1 k2 p1 p2 at file level (k3, k4 written as 0 by newer versions)
    edit(train, lambda m: m.update(k1=0.1, k2=-0.05, k3=0.0, k4=0.0, p1=0.001, p2=-0.002))
    # nerfstudio's per-frame camera, a fisheye for frame 1
    edit(train, lambda m: m["frames"][1].update(camera_model="OPENCV_FISHEYE", k1=0.02, k2=0.01, k3=0.0, k4=0.001,
                                                p1=0.0, p2=0.0))
    data = load_dataset(sphere)
    meta = json.loads(train.read_text())
    k = data.train.intrinsics.double()
    assert k.shape == (3, 11)
    expected0 = [meta["fl_x"], meta["fl_y"], meta["cx"], meta["cy"], 0.1, -0.05, 0, 0, 0.001, -0.002, 0]
    assert torch.allclose(k[0], torch.tensor(expected0, dtype=torch.float64), atol=1e-6)
    assert torch.allclose(k[1, 4:], torch.tensor([0.02, 0.01, 0, 0.001, 0, 0, 1], dtype=torch.float64), atol=1e-7)
    # the test file has no lens keys: its camera stays a pinhole [V, 4]
    assert data.test.intrinsics.shape == (1, 4)
    # is_fisheye (colmap2nerf) selects the fisheye model as well, even with all coefficients 0
    edit(train, lambda m: [f.pop(key) for f in m["frames"] for key in list(f) if key not in ("file_path",
                                                                                           "transform_matrix")])
    edit(train, lambda m: m.update(is_fisheye=True, k1=0.0, k2=0.0, p1=0.0, p2=0.0))
    assert load_dataset(sphere).train.intrinsics[:, 10].tolist() == [1.0, 1.0, 1.0]


@pytest.mark.parametrize("downscale", [1, 2])
def test_downscale_scales_focal_and_principal_point_not_the_distortion(sphere: Path, downscale: int) -> None:
    lens = [0.12, -0.03, 0.004, 0.0, 0.0015, -0.001]
    edit(sphere / "transforms_train.json", lambda m: m.update(dict(zip(("k1", "k2", "k3", "k4", "p1", "p2"), lens))))
    data = load_dataset(sphere, downscale=downscale)
    meta = json.loads((sphere / "transforms_train.json").read_text())
    full = np.array([meta["fl_x"], meta["fl_y"], meta["cx"], meta["cy"], *lens, 0.0])
    k = data.train.intrinsics.double().numpy()
    assert np.allclose(k[:, :4], full[:4] / downscale, rtol=1e-6)
    assert np.allclose(k[:, 4:], full[4:], atol=1e-7)
    # a point seen at full-resolution pixel (u, v) lies at (u, v) / downscale in the downscaled image;
    # the trainer's ray there must hit it
    rng = np.random.default_rng(1)
    c2w = data.train.c2w[0].double().numpy()
    points = c2w[:3, 3] + (rng.uniform(-0.3, 0.3, (50, 3)) - 3.0 * c2w[:3, 2]) @ np.eye(3)
    uv_full = project(points, c2w, full)
    uv = torch.tensor(uv_full / downscale, dtype=torch.float32)
    d = pixel_directions(data.train.intrinsics[0], uv[:, 0], uv[:, 1]).double().numpy() @ c2w[:3, :3].T
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    o = np.broadcast_to(c2w[:3, 3], d.shape)
    assert reprojection_px(points, o, d, c2w, full, uv_full).max() < MAX_PX * downscale


@pytest.mark.parametrize("change, problem", [
    (lambda m: m.update(camera_model="EQUIRECTANGULAR"), "unsupported camera_model 'EQUIRECTANGULAR'"),
    (lambda m: m.update(k5=0.01), "'k5' (FULL_OPENCV's rational distortion) is not supported"),
    (lambda m: m.update(is_fisheye=True, p1=0.01), "'p1'/'p2' have no meaning for the fisheye model"),
    (lambda m: m.update(is_fisheye="yes"), "'is_fisheye' must be true or false"),
    (lambda m: m.update(k1="0.1"), "'k1' must be a finite number"),
])
def test_bad_lens_keys_are_one_line_errors(sphere: Path, change, problem: str) -> None:  # type: ignore[no-untyped-def]
    edit(sphere / "transforms_train.json", change)
    with pytest.raises(DatasetError) as info:
        load_dataset(sphere)
    assert str(info.value).startswith(str(sphere / "transforms_train.json")) and problem in str(info.value)
    assert "\n" not in str(info.value)


def test_training_with_lenses_and_a_camera_box_puts_no_float64_on_the_device(sphere: Path, tmp_path: Path) -> None:
    import dataclasses

    from test_train import Float64Watch, ListSink

    from trainer.config import preset
    from trainer.train import run_training

    edit(sphere / "transforms_train.json", lambda m: m.update(k1=0.05, k2=-0.01, p1=0.001, p2=0.0005))
    edit(sphere / "transforms_train.json", lambda m: m["frames"][2].update(is_fisheye=True, p1=0.0, p2=0.0))
    data = load_dataset(sphere)
    assert data.aabb is None and data.ngp_box is None     # the box comes from the cameras
    cfg = dataclasses.replace(preset("tiny"), steps=6, resolutions=[8, 12], upsample_at=[3], prune_at=[2],
                              batch_rays=128)
    with Float64Watch() as watch:
        result = run_training(cfg, data, tmp_path / "run", ListSink(), resume=False, device=torch.device("cpu"))
    assert result.step == 6 and result.stats["scene_box"]["source"] == "cameras"
    assert watch.float64 == [], f"float64 during training: {sorted(set(watch.float64))}"
