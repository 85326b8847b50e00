"""The command line (contract 2) through a real `python -m trainer` subprocess: bad input is one
`error:` line on stderr and exit 2 (1 for a training failure), and nothing existing is overwritten."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from scenes import write_sphere_dataset

REPO = Path(__file__).resolve().parents[2]


def trainer(*args: str | Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "trainer", *map(str, args)], check=False, cwd=REPO, env=env,
                           capture_output=True, text=True, timeout=timeout)


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cli_data")
    write_sphere_dataset(root, n_train=4, n_test=1, width=16, height=16, aabb=[[-1, -1, -1], [1, 1, 1]])
    return root


def broken_copy(dataset: Path, tmp_path: Path, how: str) -> Path:
    root = tmp_path / "data"
    shutil.copytree(dataset, root)
    meta_path = root / "transforms_train.json"
    if how == "malformed":
        meta_path.write_text(meta_path.read_text()[:-10])
    elif how == "no_train_image":
        for image in (root / "train").iterdir():
            image.unlink()
    return root


# test_data.py covers every bad input at the loader; these check the path through the command line.
@pytest.mark.parametrize("how, names", [
    ("malformed", "transforms_train.json: malformed JSON"),
    ("no_train_image", "transforms_train.json: none of its 4 images exist"),
])
def test_bad_dataset_exits_2_with_one_line_and_creates_nothing(dataset: Path, tmp_path: Path, how: str,
                                                                names: str) -> None:
    data = broken_copy(dataset, tmp_path, how)
    out = tmp_path / "run"
    result = trainer("train", "--data", data, "--out", out, "--preset", "tiny", "--progress", "json")
    assert result.returncode == 2
    line = one_error_line(result)
    assert line.startswith(f"error: {data}") and names in line
    events = [json.loads(s) for s in result.stdout.splitlines()]     # stdout: JSON lines only
    assert [e["event"] for e in events] == ["error"] and f"error: {events[0]['message']}" == line
    assert not out.exists()


def test_existing_output_needs_resume_or_force_and_is_left_alone(dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    (out / "metrics.json").write_text('{"old": true}')
    result = trainer("train", "--data", dataset, "--out", out, "--preset", "tiny")
    assert result.returncode == 2 and "exists; pass --resume" in one_error_line(result)
    # --force with bad input: still nothing replaced or deleted
    result = trainer("train", "--data", tmp_path / "nowhere", "--out", out, "--preset", "tiny", "--force")
    assert result.returncode == 2 and "no such dataset directory" in one_error_line(result)
    assert (out / "notes.txt").read_text() == "mine" and (out / "metrics.json").read_text() == '{"old": true}'
    assert sorted(p.name for p in out.iterdir()) == ["metrics.json", "notes.txt"]


@pytest.mark.parametrize("args, message", [
    (["--set", "stepz=3"], "unknown config key 'stepz' (did you mean steps?)"),
    (["--set", "resolutions=8,x"], "--set resolutions[1]: expected int"),
    (["--preset", "huge"], "unknown preset 'huge'"),
    (["--resume"], "config.json: nothing to resume"),
    (["--downscale", "0"], "--downscale: must be positive"),
    (["--threads", "0"], "--threads: must be positive"),
])
def test_bad_options_exit_2(dataset: Path, tmp_path: Path, args: list[str], message: str) -> None:
    result = trainer("train", "--data", dataset, "--out", tmp_path / "run", *args)
    assert result.returncode == 2 and message in one_error_line(result)
    assert not (tmp_path / "run").exists()


def test_usage_errors_are_one_line(tmp_path: Path) -> None:
    result = trainer("train", "--out", tmp_path / "run", "--progress", "sometimes")
    assert result.returncode == 2 and "invalid choice: 'sometimes'" in one_error_line(result)
    assert "usage:" not in result.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda_is_bad_input(dataset: Path, tmp_path: Path) -> None:
    result = trainer("train", "--data", dataset, "--out", tmp_path / "run", "--device", "cuda")
    assert result.returncode == 2 and "--device cuda: CUDA is not available" in one_error_line(result)


def test_diverging_loss_fails_with_the_step(dataset: Path, tmp_path: Path) -> None:
    # an absurd density learning rate overflows the field within a step or two
    result = trainer("train", "--data", dataset, "--out", tmp_path / "run", "--preset", "tiny",
                     "--set", "lr_sigma=1e35", "--progress", "json")
    assert result.returncode == 1
    line = one_error_line(result)
    assert re.match(r"error: step \d+: loss is (NaN|infinite)$", line), line
    last = json.loads(result.stdout.splitlines()[-1])
    assert last["event"] == "error" and last["message"] == line.removeprefix("error: ")
    assert not (tmp_path / "run" / "grid.npz").exists()


def test_a_run_the_time_limit_stops_says_so(dataset: Path, tmp_path: Path) -> None:
    # `fast` and `default` stop at 5 and 10 minutes by themselves: the log says where a run stopped
    result = trainer("train", "--data", dataset, "--out", tmp_path / "run", "--preset", "tiny",
                     "--set", "max_minutes=0.0001", "--progress", "none")
    assert result.returncode == 0, result.stderr[-2000:]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert 0 < metrics["step"] < 300
    assert f"stopped by the time limit (max_minutes=0.0001) at step {metrics['step']} of 300" in result.stderr
    done = trainer("train", "--data", dataset, "--out", tmp_path / "all", "--preset", "tiny", "--set", "steps=20",
                   "--progress", "none")
    assert done.returncode == 0 and "time limit" not in done.stderr


def test_info_on_a_dataset_says_which_box_and_background_training_would_use(tmp_path: Path) -> None:
    write_sphere_dataset(tmp_path / "d", n_train=5, n_test=2, width=8, height=8, aabb=[[-1, -2, -1], [1, 2, 1]])
    result = trainer("info", tmp_path / "d", "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert (info["train_views"], info["test_views"], info["image_size"]) == (5, 2, [8, 8])
    assert info["scene_box"] == [[-1, -2, -1], [1, 2, 1]]
    assert info["scene_box_source"] == "aabb: the dataset's aabb"
    assert info["background"] == "color (1, 1, 1) (auto: the training images have alpha)"


def test_info_on_a_grid_file(fixture_grid: Path, tmp_path: Path) -> None:
    result = trainer("info", fixture_grid, "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    with np.load(fixture_grid) as raw:
        assert info["resolution"] == raw["resolution"].tolist() and info["voxels"] == len(raw["density"])
        assert info["density_max"] == pytest.approx(float(raw["density"].max()))
    (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04 truncated")
    result = trainer("info", tmp_path / "bad.npz")
    assert result.returncode == 2 and one_error_line(result).startswith(f"error: {tmp_path / 'bad.npz'}: ")
