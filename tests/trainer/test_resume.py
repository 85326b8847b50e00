"""SIGTERM (or Windows' SIGBREAK) mid-training writes a checkpoint and exits 130; --resume then finishes the run."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from cli_helpers import COMMAND, ENV, REPO, error_lines, events, run_trainer, start_trainer
from scenes import write_sphere_dataset

from trainer.cli import sigterm_as_interrupt
from trainer.io.checkpoint import load_checkpoint
from trainer.io.gridfile import load_grid

# a short two-stage schedule with frequent checkpoints (tiny's own steps are not needed here)
SETTINGS = ["steps=60", "resolutions=[16,32]", "upsample_at=[30]", "prune_at=[15]", "checkpoint_every=10",
            "log_every=5", "batch_rays=256"]


def test_sigterm_then_resume_reaches_the_final_step(tmp_path: Path) -> None:
    data = tmp_path / "data"
    write_sphere_dataset(data, n_train=8, n_test=2, width=24, height=24, aabb=[[-1, -1, -1], [1, 1, 1]])
    out = tmp_path / "run"
    sets = [a for s in SETTINGS for a in ("--set", s)]
    with (tmp_path / "stderr.txt").open("w") as err:
        proc = start_trainer("train", "--data", data, "--out", out, "--preset", "tiny", *sets, "--progress", "json",
                             stderr=err)
        assert proc.stdout is not None
        seen = []
        for line in proc.stdout:
            seen.append(line)
            event = json.loads(line)
            if event["event"] == "progress" and event["step"] >= 40:    # past the upsampling and a checkpoint
                proc.send_signal(signal.SIGTERM)
                break
        try:
            rest, _ = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    stderr = (tmp_path / "stderr.txt").read_text()
    assert proc.returncode == 130, stderr[-2000:]
    assert error_lines(stderr) == [f"error: {out / 'checkpoint.pt'}: interrupted; `--resume` continues from it"]
    assert events("".join(seen) + rest)[-1]["event"] == "error"
    saved = load_checkpoint(out / "checkpoint.pt")
    assert 40 <= saved["step"] < 60
    assert not (out / "grid.npz").exists()
    config_before = (out / "config.json").read_text()

    result = run_trainer("train", "--out", out, "--resume", "--progress", "json")
    assert result.returncode == 0, result.stderr[-2000:]
    evs = events(result.stdout)
    steps = [e["step"] for e in evs if e["event"] == "progress"]
    assert steps and steps[0] > saved["step"] and steps[-1] == 60     # continued, not restarted
    grid = load_grid(out / "grid.npz")
    assert grid.metadata["step"] == 60 and max(grid.resolution.tolist()) == 32
    assert json.loads((out / "config.json").read_text()) == json.loads(config_before)
    assert json.loads((out / "metrics.json").read_text())["step"] == 60


def test_resume_and_force_together_are_refused(tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.json").write_text("{}")
    result = run_trainer("train", "--out", out, "--resume", "--force")
    assert result.returncode == 2 and error_lines(result.stderr) == ["error: --resume and --force: choose one"]


def test_a_run_from_before_linear_light_resumes_only_in_its_own_colour_space(tmp_path: Path) -> None:
    data, out = tmp_path / "data", tmp_path / "run"
    write_sphere_dataset(data, n_train=6, n_test=1, width=16, height=16, aabb=[[-1] * 3, [1] * 3])
    settings = [a for s in (*SETTINGS, "steps=20", "color_space=srgb") for a in ("--set", s)]
    first = run_trainer("train", "--data", data, "--out", out, "--preset", "tiny", "--progress", "none", *settings)
    assert first.returncode == 0, first.stderr
    # an older run's config.json has no color_space, which now defaults to linear
    config = json.loads((out / "config.json").read_text())
    del config["color_space"]
    (out / "config.json").write_text(json.dumps(config))
    refused = run_trainer("train", "--out", out, "--resume", "--progress", "none", "--set", "steps=30")
    assert refused.returncode == 1
    assert error_lines(refused.stderr) == [
        "error: checkpoint: its grid mixes colours in srgb, the config says linear; resume with --set color_space=srgb"]
    resumed = run_trainer("train", "--out", out, "--resume", "--progress", "none", "--set", "steps=30",
                          "--set", "color_space=srgb")
    assert resumed.returncode == 0, resumed.stderr
    assert load_grid(out / "grid.npz").color_space == "srgb"


# Windows' CTRL_BREAK (SIGBREAK, the add-on's cancel there) cannot be raised here: an unused POSIX
# signal stands in for it, set as signal.SIGBREAK before the trainer starts.
needs_sigusr1 = pytest.mark.skipif(not hasattr(signal, "SIGUSR1"), reason="simulates SIGBREAK with SIGUSR1")


@needs_sigusr1
def test_sigbreak_handler_raises_keyboard_interrupt_and_ignores_further_stops(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(signal, "SIGBREAK", signal.SIGUSR1, raising=False)
    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGUSR1)}
    with sigterm_as_interrupt():
        handler = signal.getsignal(signal.SIGUSR1)
        assert callable(handler) and handler is signal.getsignal(signal.SIGTERM)
        with pytest.raises(KeyboardInterrupt):
            handler(signal.SIGUSR1, None)
        assert signal.getsignal(signal.SIGTERM) == signal.getsignal(signal.SIGUSR1) == signal.SIG_IGN
    assert {s: signal.getsignal(s) for s in before} == before


SIGBREAK_AS_SIGUSR1 = """
import runpy, signal, sys
signal.SIGBREAK = signal.SIGUSR1
sys.argv = ["trainer", *sys.argv[1:]]
runpy.run_module("trainer", run_name="__main__", alter_sys=True)
"""


@needs_sigusr1
def test_sigbreak_checkpoints_and_exits_130(tmp_path: Path) -> None:
    data, out = tmp_path / "data", tmp_path / "run"
    write_sphere_dataset(data, n_train=8, n_test=2, width=16, height=16, aabb=[[-1, -1, -1], [1, 1, 1]])
    cmd = [sys.executable, "-c", SIGBREAK_AS_SIGUSR1, "train", "--data", str(data), "--out", str(out),
           "--preset", "tiny", "--set", "steps=1000000", "--set", "log_every=1", "--progress", "json",
           "--device", "cpu", "--threads", "1"]
    proc = subprocess.Popen(cmd, cwd=REPO, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            if json.loads(line)["event"] == "progress":
                proc.send_signal(signal.SIGUSR1)  # without the handler, SIGUSR1 would kill it outright
                break
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr[-2000:]
    assert error_lines(stderr) == [f"error: {out / 'checkpoint.pt'}: interrupted; `--resume` continues from it"]
    assert load_checkpoint(out / "checkpoint.pt")["step"] >= 1


@pytest.mark.skipif(sys.platform != "linux", reason="the address-space cap (RLIMIT_AS) that makes it run out is Linux's")
def test_running_out_of_memory_keeps_the_run_and_says_what_to_change(tmp_path: Path) -> None:
    """A real out-of-memory: the trainer under a 2 GiB address-space cap, asked for 4 million rays a step
    (several GB). One line naming the device, the grid and the batch, exit 1, a checkpoint; the run then
    resumes with a smaller batch."""
    import resource

    data, out = tmp_path / "data", tmp_path / "run"
    write_sphere_dataset(data, n_train=8, n_test=2, width=24, height=24, aabb=[[-1, -1, -1], [1, 1, 1]])

    def cap_memory() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))

    args = ["train", "--data", str(data), "--out", str(out), "--preset", "tiny", "--threads", "1", "--progress",
            "none", "--set", "steps=20", "--set", "checkpoint_every=0", "--set", "batch_rays=4000000"]
    failed = subprocess.run([*COMMAND, *args], cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300,
                            preexec_fn=cap_memory, check=False)
    assert failed.returncode == 1, failed.stderr[-2000:]
    lines = error_lines(failed.stderr)
    assert len(lines) == 1, failed.stderr[-2000:]
    assert lines[0].startswith("error: out of memory on cpu at step 0 (16x16x16 grid, 4,096 voxels, "
                               "4,000,000 rays a step): ")
    assert "the checkpoint keeps step 0: resume it with fewer rays a step" in lines[0]
    assert load_checkpoint(out / "checkpoint.pt")["step"] == 0 and not (out / "grid.npz").exists()

    resumed = run_trainer("train", "--out", out, "--resume", "--set", "batch_rays=512", "--progress", "none")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert load_grid(out / "grid.npz").metadata["step"] == 20
