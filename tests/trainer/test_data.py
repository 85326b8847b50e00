"""The dataset loader (contract 1) and camera rays, against an independent pinhole projection."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from scenes import write_sphere_dataset
from srgb import decode_srgb, encode_srgb, over_in_linear_light

from trainer.io.data import DatasetError, camera_rays, load_dataset


def project_opencv(points: np.ndarray, c2w: np.ndarray, k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Continuous pixel coordinates (u right, v down, pixel centres at +0.5) of world points, through
    the OpenCV convention (camera +y down, +z forward), and the points' depth."""
    w2c = np.linalg.inv(c2w)
    cam = points @ w2c[:3, :3].T + w2c[:3, 3]
    cam_cv = cam * np.array([1.0, -1.0, -1.0])           # OpenGL -> OpenCV camera axes
    fx, fy, cx, cy = k
    return np.stack([fx * cam_cv[:, 0] / cam_cv[:, 2] + cx, fy * cam_cv[:, 1] / cam_cv[:, 2] + cy], 1), cam_cv[:, 2]


def point_line_distance(p: np.ndarray, o: np.ndarray, d: np.ndarray) -> np.ndarray:
    v = p - o
    return np.linalg.norm(v - np.sum(v * d, -1, keepdims=True) * d, axis=-1)


@pytest.fixture(scope="module")
def sphere_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("sphere")
    write_sphere_dataset(root, n_train=5, n_test=2, width=30, height=20, fl_y_ratio=0.8, shift=(2.0, -1.5),
                         aabb=[[-1, -1, -1], [1, 1, 1]], seed=3)
    return root


def test_loader_reads_images_intrinsics_and_aabb(sphere_dir: Path) -> None:
    data = load_dataset(sphere_dir, background=(0.2, 0.4, 0.6))
    meta = json.loads((sphere_dir / "transforms_train.json").read_text())
    assert data.train.images.shape == (5, 20, 30, 3) and data.test.images.shape == (2, 20, 30, 3)
    assert (data.train.width, data.train.height) == (30, 20)
    expected_k = torch.tensor([meta["fl_x"], meta["fl_y"], meta["cx"], meta["cy"]], dtype=torch.float32)
    assert torch.allclose(data.train.intrinsics, expected_k.expand(5, 4))
    assert torch.allclose(data.train.c2w[2], torch.tensor(meta["frames"][2]["transform_matrix"], dtype=torch.float32))
    assert data.aabb is not None and torch.equal(data.aabb, torch.tensor([[-1.0] * 3, [1.0] * 3]))
    # compositing, by hand: straight alpha over the background, in linear light (Blender's way)
    rgba = iio.imread(sphere_dir / "test" / "r_1.png").astype(np.float64) / 255
    bg, a = np.array([0.2, 0.4, 0.6]), rgba[..., 3:]
    expected = over_in_linear_light(rgba, bg)
    assert np.allclose(data.test.images[1].numpy(), expected, atol=2e-6)
    assert 0.0 < rgba[..., 3].mean() < 1.0     # the view holds both sphere and background
    assert data.test.paths[1] == sphere_dir / "test" / "r_1.png"
    # the papers' convention mixes the encoded values
    encoded = load_dataset(sphere_dir, background=(0.2, 0.4, 0.6), color_space="srgb")
    assert np.allclose(encoded.test.images[1].numpy(), rgba[..., :3] * a + bg * (1 - a), atol=1e-6)
    edge = (a[..., 0] > 0.05) & (a[..., 0] < 0.95)
    assert edge.any() and np.abs(encoded.test.images[1].numpy() - expected)[edge].max() > 0.01


@pytest.mark.parametrize("downscale", [1, 2])
def test_rays_pass_through_projected_points(sphere_dir: Path, downscale: int) -> None:
    data = load_dataset(sphere_dir, downscale=downscale)
    split = data.train
    rng = np.random.default_rng(0)
    points = rng.uniform(-0.6, 0.6, (split.c2w.shape[0], 3))
    c2w = split.c2w.double().numpy()
    k = split.intrinsics.double().numpy().copy()
    for view in range(len(points)):
        uv, depth = project_opencv(points[view : view + 1], c2w[view], k[view])
        assert depth[0] > 0
        # shift the principal point so the projection lands exactly on a pixel centre
        target = np.floor(uv[0]) + 0.5
        k[view, 2:] += target - uv[0]
    origins, dirs = camera_rays(torch.from_numpy(c2w).float(), torch.from_numpy(k).float(),
                                split.width, split.height, "cpu")
    for view, p in enumerate(points):
        uv, _ = project_opencv(p[None], c2w[view], k[view])
        u, v = (np.round(uv[0] - 0.5)).astype(int)
        assert 0 <= u < split.width and 0 <= v < split.height
        i = (view * split.height + v) * split.width + u
        o, d = origins[i].double().numpy(), dirs[i].double().numpy()
        assert abs(np.linalg.norm(d) - 1) < 1e-6
        assert point_line_distance(p, o, d) < 1e-4
        assert np.dot(p - o, d) > 0
        assert np.allclose(o, c2w[view, :3, 3], atol=1e-6)


@pytest.mark.parametrize("color_space", ["linear", "srgb"])
def test_downscale_averages_blocks_and_scales_intrinsics(sphere_dir: Path, color_space: str) -> None:
    full = load_dataset(sphere_dir, color_space=color_space)
    third = load_dataset(sphere_dir, downscale=3, color_space=color_space)  # 30x20 -> 10x6; 2 bottom rows dropped
    assert (third.train.width, third.train.height) == (10, 6)
    pixels = full.train.images[:, :18].double().numpy()
    if color_space == "linear":  # a pixel's light is the mean of its parts' light
        blocks = encode_srgb(decode_srgb(pixels).reshape(5, 6, 3, 10, 3, 3).mean(axis=(2, 4)))
    else:
        blocks = pixels.reshape(5, 6, 3, 10, 3, 3).mean(axis=(2, 4))
    assert np.allclose(third.train.images.numpy(), blocks, atol=2e-6)
    assert torch.allclose(third.train.intrinsics, full.train.intrinsics / 3)


def test_camera_angle_only_and_single_transforms_file(tmp_path: Path) -> None:
    write_sphere_dataset(tmp_path, n_train=10, n_test=1, width=16, height=16, extras=False)
    meta = json.loads((tmp_path / "transforms_train.json").read_text())
    (tmp_path / "transforms_train.json").rename(tmp_path / "transforms.json")
    (tmp_path / "transforms_test.json").unlink()
    data = load_dataset(tmp_path)
    assert len(data.test.paths) == 2 and len(data.train.paths) == 8    # frames 0 and 8 are held out
    assert [p.name for p in data.test.paths] == ["r_0.png", "r_8.png"]
    f = 0.5 * 16 / math.tan(0.5 * meta["camera_angle_x"])
    assert torch.allclose(data.train.intrinsics[0], torch.tensor([f, f, 8.0, 8.0]))
    assert data.aabb is None


def test_per_frame_intrinsics_override_file_level(tmp_path: Path) -> None:
    write_sphere_dataset(tmp_path, n_train=3, n_test=1, width=16, height=12)
    path = tmp_path / "transforms_train.json"
    meta = json.loads(path.read_text())
    meta["frames"][1].update({"fl_x": 50.0, "cx": 7.0})
    path.write_text(json.dumps(meta))
    k = load_dataset(tmp_path).train.intrinsics
    assert k[1, 0].item() == 50.0 and k[1, 2].item() == 7.0
    assert k[0, 0].item() == pytest.approx(meta["fl_x"]) and k[1, 1].item() == pytest.approx(meta["fl_y"])


def test_rgb_and_grey_images_are_accepted(tmp_path: Path) -> None:
    write_sphere_dataset(tmp_path, n_train=2, n_test=1, width=8, height=8)
    rgba = iio.imread(tmp_path / "train" / "r_0.png")
    iio.imwrite(tmp_path / "train" / "r_0.png", rgba[..., :3])
    iio.imwrite(tmp_path / "train" / "r_1.png", rgba[..., 0])
    data = load_dataset(tmp_path, background=(0.0, 0.0, 0.0))
    assert torch.allclose(data.train.images[0], torch.from_numpy(rgba[..., :3] / 255).float())
    grey = torch.from_numpy(rgba[..., 0] / 255).float()
    assert torch.allclose(data.train.images[1], grey[..., None].expand(8, 8, 3))


def test_missing_test_file_falls_back_to_holding_out(tmp_path: Path) -> None:
    write_sphere_dataset(tmp_path, n_train=9, n_test=1, width=8, height=8)
    (tmp_path / "transforms_test.json").unlink()
    data = load_dataset(tmp_path)
    assert len(data.train.paths) == 7 and len(data.test.paths) == 2


# --- bad input: each a DatasetError whose one line names the file ----------------------------------


def _edit(root: Path, name: str, change) -> Path:  # type: ignore[no-untyped-def]
    path = root / name
    meta = json.loads(path.read_text())
    change(meta)
    path.write_text(json.dumps(meta))
    return path


# (case, how to break a copy of a valid dataset, the path the message must name, the problem it must state)
BAD = [
    ("no_transforms", lambda r: (r / "transforms_train.json").unlink(), "", "no transforms_train.json"),
    ("malformed_json", lambda r: (r / "transforms_train.json").write_text('{"frames": [,]}'),
     "transforms_train.json", "malformed JSON"),
    ("not_object", lambda r: (r / "transforms_test.json").write_text("[1, 2]"), "transforms_test.json",
     "expected a JSON object"),
    ("no_frames", lambda r: _edit(r, "transforms_train.json", lambda m: m.pop("frames")),
     "transforms_train.json", "no 'frames' list"),
    ("no_train_image", lambda r: [p.unlink() for p in (r / "train").iterdir()], "transforms_train.json",
     "none of its 3 images exist (first: "),
    ("unreadable_image", lambda r: (r / "test" / "r_0.png").write_bytes(b"not a png at all"), "test/r_0.png",
     "unreadable image"),
    ("different_sizes", lambda r: iio.imwrite(r / "train" / "r_2.png", np.zeros((4, 4, 4), np.uint8)),
     "train/r_2.png", "image is 4x4"),
    ("empty_split", lambda r: _edit(r, "transforms_train.json", lambda m: m.update(frames=[])),
     "transforms_train.json", "train split is empty"),
    ("zero_focal", lambda r: _edit(r, "transforms_train.json", lambda m: m.update(fl_x=0.0)),
     "transforms_train.json", "must be positive"),
    ("negative_focal_frame", lambda r: _edit(r, "transforms_train.json", lambda m: m["frames"][1].update(fl_y=-3)),
     "transforms_train.json: frames[1]", "must be positive"),
    ("no_focal", lambda r: _edit(r, "transforms_train.json",
                                 lambda m: [m.pop(k) for k in ("fl_x", "camera_angle_x")]),
     "transforms_train.json", "no focal length"),
    ("size_mismatch", lambda r: _edit(r, "transforms_test.json", lambda m: m.update(w=99)),
     "test/r_0.png", "w=99"),
    ("bad_matrix", lambda r: _edit(r, "transforms_train.json",
                                   lambda m: m["frames"][0].update(transform_matrix=[[1, 0], [0, 1]])),
     "transforms_train.json: frames[0]", "4x4"),
    ("bad_aabb", lambda r: _edit(r, "transforms_train.json", lambda m: m.update(aabb=[[1, 1, 1], [0, 0, 0]])),
     "transforms_train.json", "aabb"),
]


@pytest.fixture(scope="module")
def valid_small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("valid")
    write_sphere_dataset(root, n_train=3, n_test=1, width=8, height=6, aabb=[[-1, -1, -1], [1, 1, 1]])
    return root


@pytest.mark.parametrize("case", [b[0] for b in BAD])
def test_bad_input_is_one_line_naming_the_file(case: str, valid_small: Path, tmp_path: Path) -> None:
    _, breaker, where, what = next(b for b in BAD if b[0] == case)
    root = tmp_path / "data"
    shutil.copytree(valid_small, root)
    breaker(root)
    with pytest.raises(DatasetError) as info:
        load_dataset(root)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(str(root)), message
    assert where in message and what in message, message


def test_missing_directory_and_bad_downscale(tmp_path: Path, valid_small: Path) -> None:
    with pytest.raises(DatasetError, match="no such dataset directory"):
        load_dataset(tmp_path / "nowhere")
    with pytest.raises(DatasetError, match="downscale"):
        load_dataset(valid_small, downscale=0)
    with pytest.raises(DatasetError, match="too small for downscale 9"):
        load_dataset(valid_small, downscale=9)


def test_contract_fixture_loads(fixture_dataset: Path) -> None:
    data = load_dataset(fixture_dataset)
    assert data.train.images.shape == (4, 16, 24, 3) and data.test.images.shape == (2, 16, 24, 3)
    fx = data.train.intrinsics[0, 0].item()
    assert data.train.intrinsics[0, 1].item() == pytest.approx(1.25 * fx)
    assert data.train.intrinsics[0, 2:].tolist() == [13.5, 7.0]
