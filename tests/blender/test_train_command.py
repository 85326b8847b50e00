"""The Train panel's settings become the trainer's command line (contract 2), in real Blender."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import volume_render_helpers  # noqa: F401  # isort: skip  # puts the repository on sys.path

import bpy

REPO = Path(__file__).resolve().parents[2]
TRAINER_PYTHON = REPO / ".venv" / "bin" / "python"


def _sets(cmd: list[str]) -> dict[str, str]:
    pairs = [cmd[i + 1] for i, arg in enumerate(cmd) if arg == "--set"]
    return dict(p.split("=", 1) for p in pairs)


def test_colour_is_view_dependent_unless_asked_otherwise(registered_scene, tmp_path):
    from blender_plenox.operators.train import build_command

    t = registered_scene.plenox.train
    t.data_dir, t.output_dir = str(tmp_path / "data"), str(tmp_path / "run")
    cmd, _ = build_command(bpy.context, "python")
    assert cmd[:4] == ["python", "-m", "trainer", "train"]
    assert t.view_dependent and "sh_degree" not in _sets(cmd)  # the preset's: the volume shows SH colour
    t.view_dependent = False
    assert _sets(build_command(bpy.context, "python")[0])["sh_degree"] == "0"  # the lighter option
    t.extra_overrides = "sh_degree=1 batch_rays=2048"  # the user's own word wins
    sets = _sets(build_command(bpy.context, "python")[0])
    assert sets["sh_degree"] == "1" and sets["batch_rays"] == "2048"


def test_time_limit_and_threads_reach_the_trainer(registered_scene, tmp_path):
    from blender_plenox.operators.train import build_command

    t = registered_scene.plenox.train
    t.data_dir, t.output_dir = str(tmp_path / "data"), str(tmp_path / "run")
    cmd, _ = build_command(bpy.context, "python")
    assert "max_minutes" not in _sets(cmd) and "--threads" not in cmd  # no limit, one thread per core
    t.time_limit, t.threads = 10.0, 3
    cmd, _ = build_command(bpy.context, "python")
    assert float(_sets(cmd)["max_minutes"]) == 10.0
    assert cmd[cmd.index("--threads") + 1] == "3"
    t.extra_overrides = "max_minutes=2.5"  # the user's own word wins
    assert _sets(build_command(bpy.context, "python")[0])["max_minutes"] == "2.5"


def test_the_batch_script_trains_with_a_time_limit_and_threads(tmp_path):
    """`batch.py --train --time-limit --threads`: the panel's fields from the command line, a real
    trainer; a negative value is refused before anything runs."""
    sys.path.insert(0, str(REPO / "tests" / "fixtures"))
    from scenes import write_sphere_dataset

    data, run = tmp_path / "sphere", tmp_path / "run"
    write_sphere_dataset(data, n_train=12, n_test=2, width=24, height=24, aabb=[[-1, -1, -1], [1, 1, 1]], seed=1)
    script = REPO / "blender_plenox" / "batch.py"
    base = [sys.executable, str(script), "--", "--out", str(data), "--no-capture", "--train", "--run", str(run),
            "--preset", "tiny", "--device", "cpu", "--trainer-python", str(TRAINER_PYTHON),
            "--trainer-set", "steps=1000000"]
    bad = subprocess.run([*base, "--time-limit", "-1"], cwd=tmp_path, capture_output=True, text=True, check=False)
    assert bad.returncode == 2 and "error: --time-limit: must be 0 or more" in bad.stderr and not run.exists()
    # 3 threads: not what torch or an OMP_NUM_THREADS=1 environment would pick on a 2-core machine
    done = subprocess.run([*base, "--time-limit", "0.05", "--threads", "3"], cwd=tmp_path, capture_output=True,
                          text=True, check=False)
    assert done.returncode == 0, done.stderr
    metrics = json.loads((run / "metrics.json").read_text())
    assert 0 < metrics["step"] < 1_000_000 and metrics["train_seconds"] >= 3.0 and metrics["threads"] == 3
    assert "of 1000000 (the time limit)" in done.stdout
    helped = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, check=False)
    assert "--time-limit N" in helped.stdout and "--threads N" in helped.stdout
