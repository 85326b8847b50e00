"""The dataset writer (contract 1): files on disk, splits, intrinsics, refusal to overwrite, and that the
trainer's own loader reads what it writes."""

from __future__ import annotations

import json
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest

from blender_plenox.io.dataset_writer import (
    DatasetExistsError,
    DatasetWriter,
    aabb_with_margin,
    prepare_directory,
    split_of,
)
from blender_plenox.utils.camera_math import intrinsics
from blender_plenox.utils.rig import rig_poses

K = intrinsics(lens_mm=40, sensor_width_mm=36, sensor_height_mm=24, sensor_fit="AUTO",
               resolution_x=24, resolution_y=16, shift_x=0.05)


def write_views(root: Path, count: int, test_every: int = 3) -> DatasetWriter:
    prepare_directory(root)
    writer = DatasetWriter(root, aabb_with_margin([[-1, -1, -1], [1, 1, 1]], 0.1), test_every=test_every,
                           metadata={"scene": "test"})
    rng = np.random.default_rng(0)
    for pose in rig_poses(count, (0, 0, 0), 4.0, "SPHERE", seed=2):
        _, image = writer.next_view()
        iio.imwrite(image, rng.integers(0, 255, (K.h, K.w, 4), dtype=np.uint8))
        writer.add_view(pose, K)
    return writer


def test_split_every_kth_view_to_test() -> None:
    assert [split_of(i, 4) for i in range(8)] == ["train"] * 3 + ["test"] + ["train"] * 3 + ["test"]
    assert {split_of(i, 0) for i in range(10)} == {"train"}


def test_files_and_json(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    writer = write_views(root, 7)
    train = json.loads((root / "transforms_train.json").read_text())
    test = json.loads((root / "transforms_test.json").read_text())
    assert [f["file_path"] for f in train["frames"]] == [f"./train/r_{i}" for i in range(5)]
    assert [f["file_path"] for f in test["frames"]] == ["./test/r_0", "./test/r_1"]
    for doc in (train, test):
        assert doc["fl_x"] == K.fl_x and doc["cy"] == K.cy and (doc["w"], doc["h"]) == (24, 16)
        assert doc["camera_angle_x"] == pytest.approx(2 * np.arctan(12 / K.fl_x))
        assert doc["aabb"] == [[-1.2] * 3, [1.2] * 3]
        assert doc["blender_plenox"] == {"version": 1, "scene": "test"}
        for f in doc["frames"]:
            assert (root / (f["file_path"] + ".png")).is_file()
            m = np.array(f["transform_matrix"])
            assert m.shape == (4, 4) and np.allclose(m[:3, :3].T @ m[:3, :3], np.eye(3))
    # view 2 (the third) is the first test view
    assert np.allclose(test["frames"][0]["transform_matrix"], rig_poses(7, (0, 0, 0), 4.0, "SPHERE", 2)[2])
    assert writer.written()[-1] == "./test/r_1"
    assert not [p for p in root.iterdir() if p.name.endswith(".tmp")]


def test_per_frame_intrinsics_when_cameras_differ(tmp_path: Path) -> None:
    prepare_directory(tmp_path / "ds")
    writer = DatasetWriter(tmp_path / "ds", [[0, 0, 0], [1, 1, 1]], test_every=0)
    other = intrinsics(lens_mm=80, sensor_width_mm=36, sensor_height_mm=24, sensor_fit="AUTO",
                       resolution_x=24, resolution_y=16)
    for k in (K, other):
        _, image = writer.next_view()
        iio.imwrite(image, np.zeros((16, 24, 4), np.uint8))
        writer.add_view(np.eye(4), k)
    frames = json.loads((tmp_path / "ds" / "transforms_train.json").read_text())["frames"]
    assert "fl_x" not in frames[0]
    assert frames[1]["fl_x"] == pytest.approx(K.fl_x * 80 / 40) and frames[1]["cx"] == 12.0


def test_missing_image_is_refused(tmp_path: Path) -> None:
    prepare_directory(tmp_path)
    writer = DatasetWriter(tmp_path, [[0, 0, 0], [1, 1, 1]])
    with pytest.raises(FileNotFoundError, match="r_0.png"):
        writer.add_view(np.eye(4), K)


def test_existing_folder_is_never_silently_overwritten(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    write_views(root, 4)
    (root / "notes.txt").write_text("mine")
    with pytest.raises(DatasetExistsError, match="not empty"):
        prepare_directory(root)
    assert (root / "train" / "r_0.png").is_file()
    prepare_directory(root, overwrite=True)
    assert (root / "notes.txt").read_text() == "mine"  # the user's own files survive
    assert not (root / "transforms_train.json").exists() and not any((root / "train").iterdir())
    (tmp_path / "file").write_text("x")
    with pytest.raises(DatasetExistsError, match="not a folder"):
        prepare_directory(tmp_path / "file", overwrite=True)


def test_aabb_margin_and_flat_objects() -> None:
    box = aabb_with_margin([[0, 0, 0], [2, 1, 0]], 0.1)
    assert box == [[-0.2, -0.2, -0.2], [2.2, 1.2, 0.2]]
    with pytest.raises(ValueError, match="nothing to capture"):
        aabb_with_margin(np.zeros((0, 3)))


def test_same_keys_as_the_contract_fixture(tmp_path: Path, fixture_dataset: Path) -> None:
    write_views(tmp_path / "ds", 3)
    ours = json.loads((tmp_path / "ds" / "transforms_train.json").read_text())
    theirs = json.loads((fixture_dataset / "transforms_train.json").read_text())
    assert set(ours) == set(theirs)
    assert set(ours["frames"][0]) == set(theirs["frames"][0])


def test_trainer_loader_reads_the_dataset(tmp_path: Path) -> None:
    from trainer.io.data import load_dataset  # layer 1 runs in the trainer's environment (.venv)

    write_views(tmp_path / "ds", 6)
    ds = load_dataset(tmp_path / "ds")
    assert ds.train.images.shape == (4, 16, 24, 3) and ds.test.images.shape[0] == 2
    assert np.allclose(ds.train.intrinsics[0].numpy(), [K.fl_x, K.fl_y, K.cx, K.cy], rtol=1e-6)
    assert np.allclose(ds.aabb.numpy(), [[-1.2] * 3, [1.2] * 3])
    poses = rig_poses(6, (0, 0, 0), 4.0, "SPHERE", 2)
    assert np.allclose(ds.train.c2w.numpy(), poses[[0, 1, 3, 4]], atol=1e-6)
