"""The scene box: the dataset's aabb, instant-ngp's aabb_scale, the cameras, or the config; and reports."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_helpers import run_trainer
from scenes import look_at, sphere_eyes, write_sphere_dataset

from trainer.config import preset
from trainer.io.data import DatasetError, load_dataset
from trainer.io.scene_box import LATTICE, camera_box, ngp_box
from trainer.train import scene_box_for


def ngp_forward(p: np.ndarray, scale: float, offset: np.ndarray) -> np.ndarray:
    """instant-ngp's nerf_position_to_ngp, written out: scale and offset, then the axes cycled so that
    ngp (x, y, z) = the scaled (y, z, x)."""
    q = p * scale + offset
    return q[..., [1, 2, 0]]


@pytest.mark.parametrize("aabb_scale, scale, offset", [(1, 0.33, (0.5, 0.5, 0.5)), (4, 0.33, (0.5, 0.5, 0.5)),
                                                       (16, 0.2, (0.3, 0.6, 0.5)), (2, 1.0, (0.0, 0.0, 0.0))])
def test_ngp_box_corners_map_onto_instant_ngps_training_cube(aabb_scale: float, scale: float, offset: tuple) -> None:
    box = ngp_box(aabb_scale, scale, offset)
    corners = np.array([[box[i, 0], box[j, 1], box[k, 2]] for i in (0, 1) for j in (0, 1) for k in (0, 1)])
    q = ngp_forward(corners, scale, np.asarray(offset))
    # testbed_nerf: m_aabb = BoundingBox{0.5, 0.5}.inflate(0.5 * aabb_scale)
    lo, hi = 0.5 - 0.5 * aabb_scale, 0.5 + 0.5 * aabb_scale
    assert np.allclose(np.sort(np.unique(q.round(9))), [lo, hi])
    assert np.allclose(q.min(0), lo) and np.allclose(q.max(0), hi)


def test_ngp_default_box_is_about_nerf_synthetics() -> None:
    assert np.allclose(ngp_box(1), [[-1.5151515] * 3, [1.5151515] * 3])


@pytest.fixture()
def sphere(tmp_path: Path) -> Path:
    write_sphere_dataset(tmp_path, n_train=8, n_test=1, width=16, height=16)
    return tmp_path


def edit(path: Path, change) -> None:  # type: ignore[no-untyped-def]
    meta = json.loads(path.read_text())
    change(meta)
    path.write_text(json.dumps(meta))


def test_precedence_config_then_aabb_then_aabb_scale_then_cameras(sphere: Path) -> None:
    cfg = preset("tiny")
    assert cfg.scene_box is None
    assert scene_box_for(cfg, load_dataset(sphere)).source == "cameras"
    # the test file's keys count too (after the training file's)
    edit(sphere / "transforms_test.json", lambda m: m.update(aabb_scale=2, scale=0.5, offset=0.25))
    box = scene_box_for(cfg, load_dataset(sphere))
    assert box.source == "aabb_scale" and "aabb_scale 2" in box.reason
    assert torch.allclose(box.box, torch.tensor([[-1.5] * 3, [2.5] * 3]))    # (0.5 -+ 1 - 0.25) / 0.5
    edit(sphere / "transforms_train.json", lambda m: m.update(aabb=[[-1, -2, -3], [1, 2, 3]]))
    box = scene_box_for(cfg, load_dataset(sphere))
    assert box.source == "aabb" and box.box.tolist() == [[-1, -2, -3], [1, 2, 3]]
    cfg = dataclasses.replace(cfg, scene_box=[[-4.0, -4.0, -4.0], [4.0, 4.0, 5.0]])
    box = scene_box_for(cfg, load_dataset(sphere))
    assert box.source == "config" and box.box.tolist() == [[-4, -4, -4], [4, 4, 5]]


@pytest.mark.parametrize("change, problem", [
    (lambda m: m.update(aabb_scale=0), "'aabb_scale' must be a positive number"),
    (lambda m: m.update(aabb_scale=4, scale=-1), "'scale' must be positive"),
    (lambda m: m.update(aabb_scale=4, offset=[1, 2]), "'offset' must be a number or 3 numbers"),
])
def test_bad_box_keys(sphere: Path, change, problem: str) -> None:  # type: ignore[no-untyped-def]
    edit(sphere / "transforms_train.json", change)
    with pytest.raises(DatasetError, match=problem):
        load_dataset(sphere)


def _cameras(eyes: np.ndarray, target: np.ndarray, fov: float, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    c2w = torch.tensor(np.stack([look_at(e, target) for e in eyes]), dtype=torch.float32)
    f = 0.5 * size / math.tan(0.5 * fov)
    return c2w, torch.tensor([[f, f, size / 2, size / 2]] * len(eyes), dtype=torch.float32)


@pytest.mark.parametrize("n, distance, fov_deg", [(24, 3.0, 40.0), (100, 4.0, 39.6), (8, 2.5, 60.0)])
def test_camera_box_holds_what_every_camera_sees(n: int, distance: float, fov_deg: float) -> None:
    """Cameras around a target, each looking at it: every point within distance * sin(half fov) of the
    target lies inside every view's cone, so the box must contain that ball (less one lattice step of
    sampling); it must also be centred on the target and lie inside the cameras' sphere."""
    target = np.array([0.3, -0.2, 0.1])
    c2w, k = _cameras(sphere_eyes(n, distance, 0) + target, target, math.radians(fov_deg), 32)
    result = camera_box(c2w, k, 32, 32)
    box = result.box.double().numpy()
    step = 2 * distance / (LATTICE - 1) * 1.01
    ball = distance * math.sin(math.radians(fov_deg) / 2)
    assert result.source == "cameras" and "optical axes" in result.reason
    assert (box[0] <= target - ball + step).all() and (box[1] >= target + ball - step).all()
    assert (box[0] >= target - distance - 1e-4).all() and (box[1] <= target + distance + 1e-4).all()
    assert np.allclose(box.mean(0), target, atol=0.25 * distance)


def test_camera_box_of_a_forward_facing_capture_lies_ahead_of_the_cameras() -> None:
    # a 3x3 grid of cameras on the plane z = 2, all looking down -z (parallel axes never meet)
    eyes = np.array([[x, y, 2.0] for x in (-0.2, 0.0, 0.2) for y in (-0.2, 0.0, 0.2)])
    c2w = torch.tensor(np.stack([np.eye(4)] * len(eyes)), dtype=torch.float32)
    c2w[:, :3, 3] = torch.tensor(eyes, dtype=torch.float32)
    k = torch.tensor([[16.0, 16.0, 16.0, 16.0]] * len(eyes))
    result = camera_box(c2w, k, 32, 32)
    assert "forward-facing" in result.reason
    box = result.box.numpy()
    assert box[0, 2] < 2.0 and np.isfinite(box).all() and (box[1] > box[0]).all()


def test_metrics_and_info_say_which_box_and_why(tmp_path: Path) -> None:
    write_sphere_dataset(tmp_path / "d", n_train=6, n_test=1, width=12, height=12)
    edit(tmp_path / "d" / "transforms_train.json", lambda m: m.update(aabb_scale=1))
    out = tmp_path / "run"
    quick = ["--set", "steps=3", "--set", "upsample_at=[2]", "--set", "prune_at=[]"]
    result = run_trainer("train", "--data", tmp_path / "d", "--out", out, "--preset", "tiny", *quick,
                         "--progress", "none")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "scene box [[-1.515, -1.515, -1.515], [1.515, 1.515, 1.515]] from aabb_scale" in result.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["scene_box"]["source"] == "aabb_scale"
    assert np.allclose(metrics["scene_box"]["box"], ngp_box(1), atol=1e-6)
    info = json.loads(run_trainer("info", out, "--json").stdout)
    assert info["metrics"]["scene_box"] == metrics["scene_box"]
    # --set scene_box overrides everything, and says so
    result = run_trainer("train", "--data", tmp_path / "d", "--out", out, "--force", "--preset", "tiny", *quick,
                         "--set", "scene_box=[[-2,-2,-2],[2,2,3]]", "--progress", "none")
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads((out / "metrics.json").read_text())["scene_box"] == {
        "box": [[-2.0, -2.0, -2.0], [2.0, 2.0, 3.0]], "source": "config", "reason": "the config's scene_box"}
    text = run_trainer("info", out).stdout
    assert "source: config" in text


def test_bad_config_box_is_refused(tmp_path: Path) -> None:
    write_sphere_dataset(tmp_path / "d", n_train=2, n_test=1, width=8, height=8)
    result = run_trainer("train", "--data", tmp_path / "d", "--out", tmp_path / "run", "--preset", "tiny",
                         "--set", "scene_box=[[1,1,1],[0,2,2]]", "--progress", "none")
    assert result.returncode == 2
    assert "scene_box: needs [[xmin,ymin,zmin],[xmax,ymax,zmax]] with max > min" in result.stderr


def test_box_source_cameras_ignores_the_files_aabb_scale_but_not_the_configs_box(sphere: Path) -> None:
    edit(sphere / "transforms_train.json", lambda m: m.update(aabb_scale=2))
    data = load_dataset(sphere)
    cfg = dataclasses.replace(preset("tiny"), box_source="cameras")
    assert scene_box_for(dataclasses.replace(cfg, box_source="auto"), data).source == "aabb_scale"
    box = scene_box_for(cfg, data)
    assert box.source == "cameras"
    tr = data.train
    assert torch.equal(box.box, camera_box(tr.c2w, tr.intrinsics, tr.width, tr.height).box)
    cfg = dataclasses.replace(cfg, scene_box=[[-4.0, -4.0, -4.0], [4.0, 4.0, 5.0]])
    assert scene_box_for(cfg, data).source == "config"


def test_capture_preset_trains_in_the_camera_box_over_a_learnt_background(sphere: Path, tmp_path: Path) -> None:
    edit(sphere / "transforms_train.json", lambda m: m.update(aabb_scale=2))
    # the preset's own schedule, shortened to 5 steps on the tiny scene
    out = tmp_path / "run"
    result = run_trainer("train", "--data", str(sphere), "--out", str(out), "--preset", "capture",
                         "--set", "steps=5", "--set", "resolutions=[8,12]", "--set", "upsample_at=[3]",
                         "--set", "prune_at=[2]", "--set", "batch_rays=256", "--set", "background_model=envmap",
                         "--set", "checkpoint_every=0", "--test-views", "1", "--threads", "1")
    assert result.returncode == 0, result.stderr
    assert "from cameras" in result.stderr and "envmap" in result.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["step"] == 5 and math.isfinite(metrics["test"]["psnr"])
