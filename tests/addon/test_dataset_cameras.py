"""A dataset's cameras as Blender camera settings (blender_plenox.io.dataset_cameras), against the
closed-form pinhole projection and against camera_math (Blender's own view-plane rules, which
tests/blender/test_capture.py checks against Blender)."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

import imageio.v3 as iio
import numpy as np
import pytest

from blender_plenox.io.dataset_cameras import (
    BlenderLens,
    DatasetCameraError,
    blender_lens,
    image_size,
    read_dataset_cameras,
)
from blender_plenox.utils.camera_math import Intrinsics, intrinsics, project


def intrinsics_of(lens: BlenderLens) -> Intrinsics:
    """What Blender renders with these settings (camera_math mirrors Blender's view plane)."""
    return intrinsics(lens_mm=lens.lens, sensor_width_mm=lens.sensor_width, sensor_height_mm=lens.sensor_height,
                      sensor_fit=lens.sensor_fit, resolution_x=lens.resolution[0], resolution_y=lens.resolution[1],
                      pixel_aspect_x=lens.pixel_aspect[0], pixel_aspect_y=lens.pixel_aspect[1],
                      shift_x=lens.shift_x, shift_y=lens.shift_y)


def pinhole(points_cam_cv: np.ndarray, fl_x: float, fl_y: float, cx: float, cy: float) -> np.ndarray:
    """The closed form: K applied to camera-space points in OpenCV axes (x right, y down, z forward)."""
    k = np.array([[fl_x, 0, cx], [0, fl_y, cy], [0, 0, 1.0]])
    uvw = points_cam_cv @ k.T
    return uvw[:, :2] / uvw[:, 2:]


def look_at(eye: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Camera-to-world in OpenGL axes (looks down −z, +y up), world +z up."""
    back = (eye - target) / np.linalg.norm(eye - target)
    right = np.cross([0.0, 0.0, 1.0], back)
    right /= np.linalg.norm(right)
    up = np.cross(back, right)
    m = np.eye(4)
    m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3] = right, up, back, eye
    return m


def write(path: Path, doc: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def random_points_in_view(c2w: np.ndarray, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(world points, the same points in OpenCV camera axes) in front of the camera."""
    rng = np.random.default_rng(seed)
    cam_gl = np.stack([rng.uniform(-1, 1, n), rng.uniform(-1, 1, n), -rng.uniform(1.5, 6, n)], axis=1)
    world = cam_gl @ c2w[:3, :3].T + c2w[:3, 3]
    return world, cam_gl * np.array([1.0, -1.0, -1.0])


@pytest.mark.parametrize("fit", ["AUTO", "HORIZONTAL", "VERTICAL"])
@pytest.mark.parametrize("res", [(640, 480), (480, 640), (300, 300)])
@pytest.mark.parametrize("aspect", [(1.0, 1.0), (2.0, 1.0), (1.0, 1.5)])
def test_inverse_of_camera_math(fit: str, res: tuple[int, int], aspect: tuple[float, float]) -> None:
    """Any Blender camera's intrinsics come back to settings that render the same intrinsics."""
    original = intrinsics(lens_mm=38.0, sensor_width_mm=30.0, sensor_height_mm=21.0, sensor_fit=fit,
                          resolution_x=res[0], resolution_y=res[1], pixel_aspect_x=aspect[0],
                          pixel_aspect_y=aspect[1], shift_x=0.11, shift_y=-0.23)
    lens = blender_lens(original.fl_x, original.fl_y, original.cx, original.cy, original.w, original.h)
    again = intrinsics_of(lens)
    assert (again.w, again.h) == (original.w, original.h)
    np.testing.assert_allclose([again.fl_x, again.fl_y, again.cx, again.cy],
                               [original.fl_x, original.fl_y, original.cx, original.cy], rtol=1e-12, atol=1e-9)
    # Blender accepts only pixel aspects ≥ 1; the ratio is what matters
    assert min(lens.pixel_aspect) == 1.0
    assert lens.pixel_aspect[1] / lens.pixel_aspect[0] == pytest.approx(aspect[1] / aspect[0])


def test_shift_direction_by_hand() -> None:
    """A principal point left of and above the centre (cx < w/2, cy < h/2): the view is shifted right
    and down, i.e. shift_x > 0 and shift_y < 0, by the offset over the longer side (36 mm across 800 px)."""
    lens = blender_lens(1000.0, 1000.0, 400.0 - 80.0, 300.0 - 40.0, 800, 600)
    assert lens.sensor_fit == "AUTO" and lens.sensor_width == 36.0
    assert lens.lens == pytest.approx(1000.0 * 36.0 / 800.0)
    assert lens.shift_x == pytest.approx(80.0 / 800.0)
    assert lens.shift_y == pytest.approx(-40.0 / 800.0)
    portrait = blender_lens(1000.0, 1000.0, 300.0, 400.0 + 80.0, 600, 800)   # the height is the longer side
    assert portrait.lens == pytest.approx(1000.0 * 36.0 / 800.0)
    assert (portrait.shift_x, portrait.shift_y) == (pytest.approx(0.0), pytest.approx(80.0 / 800.0))


def test_very_wide_view_keeps_blenders_minimum_lens() -> None:
    """A 174° field of view would need a 0.9 mm lens on 36 mm; Blender stops at 1 mm, so the sensor
    widens (to 40 mm) and the projection stays exact."""
    lens = blender_lens(16.0, 16.0, 300.0, 200.0, 640, 400)
    assert lens.lens == pytest.approx(1.0) and lens.sensor_width == pytest.approx(40.0)
    intr = intrinsics_of(lens)
    np.testing.assert_allclose([intr.fl_x, intr.fl_y, intr.cx, intr.cy], [16.0, 16.0, 300.0, 200.0], rtol=1e-12)


def test_instant_ngp_file_projects_like_its_pinhole(tmp_path: Path) -> None:
    """A colmap2nerf-style transforms.json: off-centre principal point, fl_x ≠ fl_y, distortion; the
    imported settings project random points to the closed-form pixel, within 1e-6 px."""
    frames = []
    eyes = [(3.0, -2.0, 1.5), (-2.5, -3.0, 0.8), (0.5, 3.5, 2.5)]
    for i, eye in enumerate(eyes):
        frames.append({"file_path": f"images/frame_{i:05d}.jpg",
                       "transform_matrix": look_at(np.array(eye), np.zeros(3)).tolist()})
    frames[2].update({"fl_x": 700.0, "fl_y": 690.0, "cx": 350.0, "cy": 240.0, "w": 720, "h": 480})
    doc = {"fl_x": 1111.0, "fl_y": 1070.5, "cx": 612.3, "cy": 351.9, "w": 1280, "h": 720,
           "k1": -0.05, "k2": 0.01, "p1": 0.001, "p2": -0.0005, "aabb_scale": 4, "frames": frames}
    write(tmp_path / "ngp" / "transforms.json", doc)
    result = read_dataset_cameras(tmp_path / "ngp")
    assert [c.name for c in result.cameras] == ["frame_00000", "frame_00001", "frame_00002"]
    assert result.resolution == (1280, 720)
    for cam, frame in zip(result.cameras, frames):
        k = {**doc, **frame}
        intr = intrinsics_of(cam.lens)
        assert (intr.w, intr.h) == (k["w"], k["h"])
        world, cam_cv = random_points_in_view(np.array(frame["transform_matrix"]), 200, seed=len(cam.name))
        expected = pinhole(cam_cv, k["fl_x"], k["fl_y"], k["cx"], k["cy"])
        ours = project(world, cam.matrix_world, intr)[:, :2]
        assert np.abs(ours - expected).max() < 1e-6
        assert cam.distortion == {"k1": -0.05, "k2": 0.01, "p1": 0.001, "p2": -0.0005}
    # one warning naming the dataset and the coefficients, one for the odd size (the third camera)
    (lens_note,) = [n for n in result.notes if "distortion" in n]
    assert str(tmp_path / "ngp") in lens_note and "k1, k2, p1, p2" in lens_note and "3 of 3" in lens_note
    assert any("1280x720 (2), 720x480 (1)" in n for n in result.notes)


def test_a_wrong_shift_sign_would_be_caught() -> None:
    """The projection check above is sensitive to the shift: flipping its sign moves points by pixels."""
    lens = blender_lens(1111.0, 1070.5, 612.3, 351.9, 1280, 720)
    flipped = BlenderLens(**{**lens.__dict__, "shift_x": -lens.shift_x, "shift_y": -lens.shift_y})
    c2w = look_at(np.array([3.0, -2.0, 1.5]), np.zeros(3))
    world, cam_cv = random_points_in_view(c2w, 50, seed=1)
    expected = pinhole(cam_cv, 1111.0, 1070.5, 612.3, 351.9)
    assert np.abs(project(world, c2w, intrinsics_of(flipped))[:, :2] - expected).max() > 10.0


def test_nerf_synthetic_folder(tmp_path: Path) -> None:
    """camera_angle_x only, paths without extension, sizes from the PNGs, train/val/test splits, and
    test poses whose images were never rendered (BlenderNeRF)."""
    root = tmp_path / "lego"
    (root / "train").mkdir(parents=True)
    iio.imwrite(root / "train" / "r_0.png", np.zeros((40, 50, 4), np.uint8))
    iio.imwrite(root / "train" / "r_1.png", np.zeros((40, 50, 4), np.uint8))
    angle = 0.6911112070083618
    c2w = look_at(np.array([0.0, -4.0, 2.0]), np.zeros(3)).tolist()
    write(root / "transforms_train.json", {"camera_angle_x": angle, "frames": [
        {"file_path": "./train/r_0", "transform_matrix": c2w}, {"file_path": "train\\r_1.png", "transform_matrix": c2w}]})
    write(root / "transforms_test.json", {"camera_angle_x": angle, "frames": [
        {"file_path": "./test/r_0", "transform_matrix": c2w}]})
    far = look_at(np.array([0.0, 4.0, 2.0]), np.zeros(3)).tolist()   # 8 units from the others
    write(root / "transforms_val.json", {"camera_angle_x": angle, "frames": [
        {"file_path": "./val/r_0", "transform_matrix": far}]})
    result = read_dataset_cameras(root)
    assert [c.name for c in result.cameras] == ["train_r_0", "train_r_1", "val_r_0", "test_r_0"]
    assert result.name == "lego" and result.resolution == (50, 40) and result.uniform_resolution
    assert result.notes == []
    focal = 25.0 / math.tan(angle / 2)
    for cam in result.cameras:
        intr = intrinsics_of(cam.lens)
        np.testing.assert_allclose([intr.fl_x, intr.fl_y, intr.cx, intr.cy], [focal, focal, 25.0, 20.0], rtol=1e-12)
        assert cam.distortion == {}
        # no near/far: scaled to the cameras' spread, 8 units
        assert (cam.clip_start, cam.clip_end) == (pytest.approx(0.008), pytest.approx(800.0))


def test_per_frame_keys_override_and_camera_angle_y(tmp_path: Path) -> None:
    c2w = np.eye(4).tolist()
    write(tmp_path / "transforms.json", {"camera_angle_x": 1.0, "camera_angle_y": 0.5, "w": 64, "h": 48,
                                          "near": 0.5, "far": 20.0, "frames": [
        {"file_path": "a.png", "transform_matrix": c2w},
        {"file_path": "a.png", "transform_matrix": c2w, "fl_x": 80.0, "cx": 30.0}]})
    first, second = read_dataset_cameras(tmp_path).cameras
    assert (first.name, second.name) == ("a", "a.001")
    assert first.fl_x == pytest.approx(32 / math.tan(0.5)) and first.fl_y == pytest.approx(24 / math.tan(0.25))
    assert (second.fl_x, second.cx, second.cy) == (80.0, 30.0, 24.0)
    assert second.fl_y == pytest.approx(24 / math.tan(0.25))
    assert (first.clip_start, first.clip_end) == (0.5, 20.0)


def test_pixel_aspect_float_noise_is_one_aspect(tmp_path: Path) -> None:
    """One camera's fl_x/fl_y at two image sizes differs in the last bits: not a second pixel aspect."""
    c2w = np.eye(4).tolist()
    big = intrinsics(lens_mm=50.0, sensor_width_mm=36.0, sensor_height_mm=24.0, sensor_fit="AUTO",
                     resolution_x=48, resolution_y=36, pixel_aspect_x=1.25)
    small = intrinsics(lens_mm=50.0, sensor_width_mm=36.0, sensor_height_mm=24.0, sensor_fit="AUTO",
                       resolution_x=16, resolution_y=26, pixel_aspect_x=1.25)
    write(tmp_path / "transforms.json", {"frames": [
        {"file_path": "a", "transform_matrix": c2w, **big.as_dict()},
        {"file_path": "b", "transform_matrix": c2w, **big.as_dict()},
        {"file_path": "c", "transform_matrix": c2w, **small.as_dict()}]})
    result = read_dataset_cameras(tmp_path)
    assert result.pixel_aspect == pytest.approx((1.25, 1.0)) and result.resolution == (48, 36)
    (note,) = result.notes
    assert "differ in image size (48x36 (2), 16x26 (1))" in note


def test_fisheye_is_named_even_without_coefficients(tmp_path: Path) -> None:
    """The pure equidistant fisheye (no k) is still not a pinhole: it is kept and warned about; a
    PINHOLE or an OPENCV model with every coefficient 0 is a pinhole and says nothing."""
    c2w = np.eye(4).tolist()
    write(tmp_path / "transforms.json", {"fl_x": 20.0, "w": 64, "h": 48, "frames": [
        {"file_path": "a", "transform_matrix": c2w, "is_fisheye": True},
        {"file_path": "b", "transform_matrix": c2w, "camera_model": "OPENCV_FISHEYE", "k1": 0.1},
        {"file_path": "c", "transform_matrix": c2w, "camera_model": "OPENCV", "k1": 0.0},
        {"file_path": "d", "transform_matrix": c2w, "camera_model": "PINHOLE"}]})
    result = read_dataset_cameras(tmp_path)
    assert [c.distortion for c in result.cameras] == [
        {"is_fisheye": True}, {"k1": 0.1, "camera_model": "OPENCV_FISHEYE"}, {}, {}]
    (note,) = result.notes
    assert "(k1, is_fisheye, camera_model) on 2 of 4 cameras" in note


def test_scaled_pose_is_made_rigid(tmp_path: Path) -> None:
    c2w = look_at(np.array([1.0, -3.0, 1.0]), np.zeros(3))
    scaled = c2w.copy()
    scaled[:3, :3] *= 2.5
    write(tmp_path / "transforms.json", {"fl_x": 50.0, "w": 64, "h": 48,
                                          "frames": [{"file_path": "x", "transform_matrix": scaled.tolist()}]})
    (cam,) = read_dataset_cameras(tmp_path).cameras
    np.testing.assert_allclose(cam.matrix_world, c2w, atol=1e-12)


def test_image_size_from_headers(tmp_path: Path) -> None:
    iio.imwrite(tmp_path / "a.png", np.zeros((7, 13, 3), np.uint8))
    iio.imwrite(tmp_path / "b.jpg", np.zeros((21, 34, 3), np.uint8))
    (tmp_path / "c.txt").write_text("not an image")
    assert image_size(tmp_path / "a.png") == (13, 7)
    assert image_size(tmp_path / "b.jpg") == (34, 21)
    assert image_size(tmp_path / "c.txt") is None
    assert image_size(tmp_path / "missing.png") is None


@pytest.mark.parametrize(("files", "message"), [
    ({}, "no transforms_train.json or transforms.json"),
    ({"transforms.json": "{not json"}, "transforms.json: malformed JSON"),
    ({"transforms.json": "[]"}, "transforms.json: expected a JSON object"),
    ({"transforms.json": {"fl_x": 5, "w": 4, "h": 4}}, "transforms.json: no 'frames' list"),
    ({"transforms.json": {"fl_x": 5, "w": 4, "h": 4, "frames": [{"file_path": "a"}]}},
     "transforms.json: frames[0]: missing or non-numeric 'transform_matrix'"),
    ({"transforms.json": {"w": 4, "h": 4, "frames": [{"file_path": "a", "transform_matrix": np.eye(4).tolist()}]}},
     "transforms.json: frames[0]: no focal length"),
    ({"transforms.json": {"fl_x": 5, "frames": [{"file_path": "a", "transform_matrix": np.eye(4).tolist()}]}},
     "transforms.json: no image size"),
    ({"transforms.json": {"fl_x": "5", "w": 4, "h": 4,
                          "frames": [{"file_path": "a", "transform_matrix": np.eye(4).tolist()}]}},
     "transforms.json: frames[0]: 'fl_x' must be a finite number"),
    ({"transforms.json": {"fl_x": 5, "w": 4, "h": 4, "frames": []}}, "transforms.json: lists no frames"),
])
def test_errors_are_one_line_naming_the_file(tmp_path: Path, files: dict[str, Any], message: str) -> None:
    for name, content in files.items():
        (tmp_path / name).write_text(content if isinstance(content, str) else json.dumps(content))
    with pytest.raises(DatasetCameraError) as err:
        read_dataset_cameras(tmp_path)
    text = str(err.value)
    assert message in text and "\n" not in text and text.startswith(str(tmp_path))


def trainer_cameras(root: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The trainer's own reading of the dataset: image path → (fx fy cx cy, c2w), both splits."""
    from trainer.io.data import load_dataset

    data = load_dataset(root)
    out = {}
    for split in (data.train, data.test):
        for path, k, c2w in zip(split.paths, split.intrinsics.numpy(), split.c2w.numpy()):
            out[str(path.resolve().with_suffix(""))] = (k[:4].astype(np.float64), c2w.astype(np.float64))
    return out


def test_agrees_with_the_trainers_loader(fixture_dataset: Path) -> None:
    """The contract fixture (fl_x ≠ fl_y, lens shift): the cameras the trainer trains on are the ones
    imported, with the same pinhole (float32 tolerance) and pose."""
    theirs = trainer_cameras(fixture_dataset)
    ours = read_dataset_cameras(fixture_dataset)
    assert len(ours.cameras) == len(theirs)
    for cam in ours.cameras:
        k, c2w = theirs[str((fixture_dataset / cam.file_path).resolve().with_suffix(""))]
        intr = intrinsics_of(cam.lens)
        np.testing.assert_allclose([intr.fl_x, intr.fl_y, intr.cx, intr.cy], k, rtol=1e-6)
        np.testing.assert_allclose(cam.matrix_world, c2w, atol=1e-5)


def test_lego(lego_dir: Path) -> None:
    """NeRF-synthetic's lego was rendered by Blender with a 50 mm lens on a 36 mm sensor; its val poses
    have no images here and are imported all the same."""
    ours = read_dataset_cameras(lego_dir)
    splits = Counter(c.name.split("_")[0] for c in ours.cameras)
    assert splits == {"train": 100, "val": 100, "test": 200}
    assert ours.resolution == (400, 400) and ours.notes == []
    for cam in ours.cameras:
        assert cam.lens.lens == pytest.approx(50.0, abs=1e-4)
        assert (cam.lens.shift_x, cam.lens.shift_y) == (0.0, 0.0)
