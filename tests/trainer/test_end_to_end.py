"""`python -m trainer train --preset tiny` on an analytic sphere scene, then eval, render and info.

The scene (tests/fixtures/scenes.py) is rendered by exact ray-sphere intersection, so the trained
field must reproduce something with structure: its test PSNR must clearly beat the best constant
image (the mean colour of each view), which bounds from above any flat initial render.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import imageio.v3 as iio
import numpy as np
import pytest
from cli_helpers import error_lines, events, run_trainer
from scenes import write_sphere_dataset
from srgb import over_in_linear_light

from trainer.config import PRESETS
from trainer.io.gridfile import load_grid

TINY = PRESETS["tiny"]
STEPS, FINAL_SIDE = TINY.steps, TINY.resolutions[-1]
AABB = [[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]]


def gt_on_white(path: Path) -> np.ndarray:
    """The image on white, mixed in linear light as the trainer's default color_space does."""
    return over_in_linear_light(iio.imread(path).astype(np.float64) / 255, np.ones(3))


def psnr64(a: np.ndarray, b: np.ndarray) -> float:
    return -10 * math.log10(float(np.mean((a - b) ** 2)))


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("e2e")
    data = root / "data"
    write_sphere_dataset(data, n_train=20, n_test=4, width=32, height=32, aabb=AABB, seed=1)
    out = root / "run"
    out.mkdir()
    (out / "notes.txt").write_text("not the trainer's")       # --force must leave it alone
    (out / "renders").mkdir()                                 # ...but an earlier run's results go
    (out / "renders" / "test_099.png").write_bytes(b"stale")
    (out / "snapshot.npz").write_bytes(b"stale")
    result = run_trainer("train", "--data", data, "--out", out, "--preset", "tiny", "--force",
                         "--progress", "json", "--device", "cpu", "--threads", "1")
    assert result.returncode == 0, result.stderr[-2000:]
    return {"data": data, "out": out, "events": events(result.stdout), "stderr": result.stderr}


def test_events_follow_contract_3(trained: dict[str, Any]) -> None:
    evs = trained["events"]
    names = [e["event"] for e in evs]
    assert names[0] == "start" and names[-1] == "done" and "error" not in names
    start = evs[0]
    assert start["version"] == 1 and start["device"] == "cpu" and start["total"] == STEPS
    progress = [e for e in evs if e["event"] == "progress"]
    steps = [e["step"] for e in progress]
    assert steps == sorted(steps) and steps[-1] == STEPS
    assert all(k in progress[-1] for k in ("loss", "psnr", "resolution", "voxels", "elapsed", "eta"))
    stages = {e["name"] for e in evs if e["event"] == "stage"}
    assert {"upsample", "eval"} <= stages
    done = evs[-1]
    assert Path(done["grid"]) == trained["out"] / "grid.npz" and Path(done["metrics"]) == trained["out"] / "metrics.json"
    assert not error_lines(trained["stderr"])


def test_test_psnr_clearly_beats_a_constant_image(trained: dict[str, Any]) -> None:
    metrics = json.loads((trained["out"] / "metrics.json").read_text())
    gts = [gt_on_white(p) for p in sorted((trained["data"] / "test").glob("*.png"))]
    best_constant = np.mean([psnr64(np.broadcast_to(g.mean((0, 1)), g.shape), g) for g in gts])
    assert metrics["test"]["views"] == 4
    assert metrics["test"]["psnr"] > best_constant + 5.0, (metrics["test"]["psnr"], best_constant)
    assert 0.5 < metrics["test"]["ssim"] <= 1.0
    assert trained["events"][-1]["psnr"] == pytest.approx(metrics["test"]["psnr"])
    assert metrics["step"] == STEPS and metrics["device"] == "cpu" and metrics["voxels"] > 0
    # the written renders, compared with the ground truth here, give the reported figures (8-bit rounding aside)
    for row, gt in zip(metrics["test"]["per_view"], gts):
        render = iio.imread(trained["out"] / "renders" / row["file"]).astype(np.float64) / 255
        assert psnr64(render, gt) == pytest.approx(row["psnr"], abs=0.1)


def test_grid_file_and_run_directory(trained: dict[str, Any]) -> None:
    out = trained["out"]
    grid = load_grid(out / "grid.npz")
    assert grid.metadata["step"] == STEPS and max(grid.resolution.tolist()) == FINAL_SIDE
    # the trainer may shrink its box to the occupied part of the dataset's aabb, never past the sphere
    box = np.asarray(AABB)
    assert (grid.aabb[0] >= box[0] - 1e-6).all() and (grid.aabb[1] <= box[1] + 1e-6).all()
    assert (grid.aabb[0] <= -0.8).all() and (grid.aabb[1] >= 0.8).all(), grid.aabb
    assert grid.metadata["config"]["steps"] == STEPS
    assert grid.sh.shape[2] == (grid.sh_degree + 1) ** 2 and len(grid.density) > 0
    config = json.loads((out / "config.json").read_text())
    assert config["steps"] == STEPS and json.loads((out / "run.json").read_text())["data"] == str(trained["data"])
    assert (out / "notes.txt").read_text() == "not the trainer's"
    assert sorted(p.name for p in (out / "renders").iterdir()) == [f"test_{i:03d}.png" for i in range(4)]
    assert not list(out.rglob(".*tmp"))


def test_eval_reproduces_the_metrics_from_the_grid_file(trained: dict[str, Any]) -> None:
    before = json.loads((trained["out"] / "metrics.json").read_text())["test"]["psnr"]
    result = run_trainer("eval", "--run", trained["out"])
    assert result.returncode == 0, result.stderr
    after = json.loads((trained["out"] / "metrics.json").read_text())
    assert after["test"]["psnr"] == pytest.approx(before, abs=0.05) and "evaluated" in after
    assert "test: PSNR" in result.stdout


def test_orbit_render_and_gif(trained: dict[str, Any]) -> None:
    result = run_trainer("render", "--run", trained["out"], "--views", "orbit", "--frames", "4", "--size", "24",
                         "--dc-only")
    assert result.returncode == 0, result.stderr
    orbit = trained["out"] / "orbit_dc"
    assert sorted(p.name for p in orbit.glob("orbit_*.png")) == [f"orbit_{i:03d}.png" for i in range(4)]
    gif = iio.imread(orbit / "orbit.gif", index=None)
    assert gif.shape[:3] == (4, 24, 24)
    for i in range(4):
        frame = iio.imread(orbit / f"orbit_{i:03d}.png").astype(np.float64) / 255
        # every orbit camera looks at the box centre, where the sphere is: centre not background, corner is
        assert np.abs(frame[10:14, 10:14] - 1).max() > 0.2 and np.abs(frame[0, 0] - 1).max() < 0.1


def test_render_of_test_views_matches_the_training_renders(trained: dict[str, Any], tmp_path: Path) -> None:
    result = run_trainer("render", "--run", trained["out"], "--views", "test", "--out", tmp_path / "views",
                         "--progress", "json")
    assert result.returncode == 0, result.stderr
    assert [e["name"] for e in events(result.stdout)] == ["render"]
    names = sorted(p.name for p in (tmp_path / "views").iterdir())
    assert names == sorted(p.name for p in (trained["out"] / "renders").iterdir())
    for name in names:   # both come from grid.npz, so they agree to the last bit
        assert np.array_equal(iio.imread(tmp_path / "views" / name), iio.imread(trained["out"] / "renders" / name))


def test_info_summarises_the_run(trained: dict[str, Any]) -> None:
    result = run_trainer("info", trained["out"], "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    metrics = json.loads((trained["out"] / "metrics.json").read_text())
    assert info["metrics"]["test"]["psnr"] == pytest.approx(metrics["test"]["psnr"])
    assert info["grid"]["voxels"] == metrics["voxels"] and info["grid"]["step"] == STEPS


def test_force_leaves_only_this_runs_results(trained: dict[str, Any]) -> None:
    out = trained["out"]
    assert (out / "notes.txt").read_text() == "not the trainer's"
    assert not (out / "renders" / "test_099.png").exists()
    assert not (out / "snapshot.npz").exists()  # tiny writes no snapshot: the stale one is gone, not replaced
    assert sorted(p.name for p in (out / "renders").glob("test_*.png")) == [f"test_{i:03d}.png" for i in range(4)]
