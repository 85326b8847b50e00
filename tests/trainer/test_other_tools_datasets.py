"""Datasets as other tools write them (BlenderNeRF, instant-ngp, nerfstudio), missing images included."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_helpers import error_lines, run_trainer
from scenes import write_blendernerf_dataset, write_sphere_dataset

from trainer.io.data import HOLDOUT_EVERY, DatasetError, load_dataset
from trainer.io.gridfile import load_grid


@pytest.fixture(scope="module")
def blendernerf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("blendernerf")
    write_blendernerf_dataset(root, n_frames=48, train_step=2, width=32, height=32, aabb_scale=1)
    return root


def test_blendernerf_layout_as_written(blendernerf: Path) -> None:
    # the generator's own promises, read back with plain json: this is the layout the loader must take
    train = json.loads((blendernerf / "transforms_train.json").read_text())
    test = json.loads((blendernerf / "transforms_test.json").read_text())
    assert "aabb" not in train and train["aabb_scale"] == 1 and train["w"] == 32.0
    assert train["frames"][0]["file_path"] == "train/0001.png" and train["frames"][1]["file_path"] == "train/0003.png"
    assert len(test["frames"]) == 48 and not (blendernerf / "test").exists()


def test_blendernerf_test_poses_without_images_are_held_out_from_train(blendernerf: Path) -> None:
    data = load_dataset(blendernerf)
    train_listed = json.loads((blendernerf / "transforms_train.json").read_text())["frames"]
    names = [Path(f["file_path"]).name for f in train_listed]
    assert [p.name for p in data.test.paths] == names[::HOLDOUT_EVERY]
    assert [p.name for p in data.train.paths] == [n for i, n in enumerate(names) if i % HOLDOUT_EVERY]
    test_file = blendernerf / "transforms_test.json"
    assert data.notes == [(f"note: {test_file}: none of its 48 images exist (first: {blendernerf / 'test' / '0001.png'}); "
                          f"so every {HOLDOUT_EVERY}th training view is held out for testing instead")]
    # aabb_scale 1 with instant-ngp's scale 0.33 and offset 0.5: +-0.5/0.33 about the origin
    assert data.aabb is None and data.ngp_box is not None and data.ngp_box.source == "aabb_scale"
    assert torch.allclose(data.ngp_box.box, torch.tensor([[-0.5 / 0.33] * 3, [0.5 / 0.33] * 3]))


def test_blendernerf_windows_paths(tmp_path: Path) -> None:
    write_blendernerf_dataset(tmp_path, n_frames=9, train_step=3, width=8, height=8, windows_paths=True)
    assert json.loads((tmp_path / "transforms_train.json").read_text())["frames"][1]["file_path"] == "train\\0004.png"
    data = load_dataset(tmp_path)
    assert [p.name for p in data.train.paths + data.test.paths] == ["0004.png", "0007.png", "0001.png"]


def test_blendernerf_dataset_trains_with_default_settings(blendernerf: Path, tmp_path: Path) -> None:
    # default settings but the tiny preset's schedule (the test's time budget); no --set of any kind
    out = tmp_path / "run"
    result = run_trainer("train", "--data", blendernerf, "--out", out, "--preset", "tiny", "--progress", "none")
    assert result.returncode == 0, result.stderr[-2000:]
    assert error_lines(result.stderr) == []
    assert "transforms_test.json: none of its 48 images exist" in result.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["scene_box"]["source"] == "aabb_scale"
    assert metrics["test"]["views"] == 3 and metrics["test"]["psnr"] > 20.0, metrics["test"]
    assert load_grid(out / "grid.npz").coords.shape[0] > 0


# --- instant-ngp: one transforms.json whose frames' images may be missing ---------------------------


def _single_file(root: Path, n: int) -> Path:
    """A transforms.json in instant-ngp's layout (colmap2nerf: images/NNNN.jpg named with extension)."""
    write_sphere_dataset(root, n_train=n, n_test=1, width=16, height=16, image_name="{:04d}")
    meta = json.loads((root / "transforms_train.json").read_text())
    (root / "images").mkdir()
    for frame in meta["frames"]:
        name = Path(frame["file_path"]).name + ".png"
        (root / "train" / name).rename(root / "images" / name)
        frame["file_path"] = f"images/{name}"
    meta["aabb_scale"] = 4
    shutil.rmtree(root / "train")
    shutil.rmtree(root / "test")
    (root / "transforms_train.json").unlink()
    (root / "transforms_test.json").unlink()
    path = root / "transforms.json"
    path.write_text(json.dumps(meta))
    return path


def test_single_file_skips_frames_whose_image_is_missing(tmp_path: Path) -> None:
    path = _single_file(tmp_path, 20)
    for k in (3, 4, 11):
        (tmp_path / "images" / f"{k:04d}.png").unlink()
    data = load_dataset(tmp_path)
    kept = [f"{k:04d}.png" for k in range(20) if k not in (3, 4, 11)]   # 17 frames left
    assert [p.name for p in data.test.paths] == kept[::HOLDOUT_EVERY]
    assert [p.name for p in data.train.paths] == [n for i, n in enumerate(kept) if i % HOLDOUT_EVERY]
    assert data.notes == [(f"warning: {path}: 3 of 20 listed images are missing; their frames are skipped "
                          f"(first: {tmp_path / 'images' / '0003.png'})")]
    assert data.ngp_box is not None and torch.allclose(data.ngp_box.box[1], torch.full((3,), 2 / 0.33))


def test_single_file_with_no_image_left_is_an_error(tmp_path: Path) -> None:
    path = _single_file(tmp_path, 3)
    shutil.rmtree(tmp_path / "images")
    with pytest.raises(DatasetError) as info:
        load_dataset(tmp_path)
    assert str(info.value) == f"{path}: none of its 3 images exist (first: {tmp_path / 'images' / '0000.png'})"


def test_some_test_images_missing_and_empty_test_split(tmp_path: Path) -> None:
    write_sphere_dataset(tmp_path, n_train=9, n_test=3, width=8, height=8)
    (tmp_path / "test" / "r_1.png").unlink()
    data = load_dataset(tmp_path)
    assert [p.name for p in data.test.paths] == ["r_0.png", "r_2.png"] and len(data.train.paths) == 9
    assert len(data.notes) == 1 and data.notes[0].startswith(f"warning: {tmp_path / 'transforms_test.json'}: 1 of 3")
    # BlenderNeRF's Gaussian-splatting export writes a test file with no frames at all
    test_file = tmp_path / "transforms_test.json"
    test_file.write_text(json.dumps({**json.loads(test_file.read_text()), "frames": []}))
    data = load_dataset(tmp_path)
    assert len(data.test.paths) == 2 and len(data.train.paths) == 7
    assert data.notes == [(f"note: {test_file}: has no frames; so every {HOLDOUT_EVERY}th training view is held out "
                          "for testing instead")]


def test_a_val_file_with_images_serves_when_test_images_are_missing(tmp_path: Path) -> None:
    write_sphere_dataset(tmp_path, n_train=4, n_test=2, width=8, height=8)
    shutil.copy(tmp_path / "transforms_test.json", tmp_path / "transforms_val.json")
    test_file = tmp_path / "transforms_test.json"
    meta = json.loads(test_file.read_text())
    for frame in meta["frames"]:
        frame["file_path"] = frame["file_path"].replace("test/", "nowhere/")
    test_file.write_text(json.dumps(meta))
    data = load_dataset(tmp_path)
    assert len(data.train.paths) == 4 and [p.name for p in data.test.paths] == ["r_0.png", "r_1.png"]
    assert data.notes == []


def test_missing_images_note_reaches_stderr_once(tmp_path: Path) -> None:
    _single_file(tmp_path / "d", 10)
    (tmp_path / "d" / "images" / "0002.png").unlink()
    result = run_trainer("train", "--data", tmp_path / "d", "--out", tmp_path / "run", "--preset", "tiny",
                         "--set", "steps=2", "--set", "upsample_at=[1]", "--set", "prune_at=[]", "--progress", "none")
    assert result.returncode == 0, result.stderr[-2000:]
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "1 of 10 listed images are missing" in warnings[0]
    assert np.isfinite(json.loads((tmp_path / "run" / "metrics.json").read_text())["test"]["psnr"])
