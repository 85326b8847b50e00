"""The trainer runner with real child processes.

A small stand-in program (written below, run by a real interpreter) speaks contracts 2 and 3, so
cancel, logging and failure paths can be checked in a second; the real trainer is exercised by the
Blender end-to-end test and by test_real_trainer_cli below once trainer/ is in place.
"""

import os
import sys
import textwrap
import time
import venv
from pathlib import Path

import pytest

from blender_plenox.utils import trainer_process as tp

STAND_IN = textwrap.dedent(
    """
    import json, os, signal, sys, time
    args = sys.argv[1:]
    out = args[args.index("--out") + 1]
    mode = os.environ.get("STAND_IN_MODE", "ok")
    def emit(**kw):
        print(json.dumps({"time": time.time(), **kw}), flush=True)
    def on_term(signum, frame):
        open(os.path.join(out, "checkpoint.pt"), "w").write("ckpt")
        print("error: interrupted: checkpoint written", file=sys.stderr, flush=True)
        sys.exit(130)
    signal.signal(signal.SIGTERM, on_term)
    print("loading data", file=sys.stderr, flush=True)  # before out exists: must still reach the log
    time.sleep(0.2)
    os.makedirs(out)
    emit(event="start", version=1, total=20, device="cpu", out=out, resolution=[8, 8, 8], config="c")
    print("not json on stdout", flush=True)
    if mode == "fail":
        print("error: data/transforms_train.json: no frames", file=sys.stderr, flush=True)
        sys.exit(2)
    for step in range(1, 21):
        emit(event="progress", step=step, total=20, loss=0.1, psnr=10.0 + step, resolution=[8, 8, 8],
             voxels=512, elapsed=step * 0.01, eta=(20 - step) * 0.01)
        if step == 10:
            emit(event="snapshot", step=10, path=os.path.join(out, "snapshot.npz"))
        time.sleep(0.02 if mode == "ok" else 0.5)
    emit(event="done", grid=os.path.join(out, "grid.npz"), metrics="m.json", psnr=29.0, elapsed=0.4)
    """
)


@pytest.fixture()
def stand_in(tmp_path):
    pkg = tmp_path / "fake_root" / "trainer"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "__main__.py").write_text(STAND_IN)
    return str(tmp_path / "fake_root")


def _start(stand_in, out, mode):
    cmd = tp.build_train_command(sys.executable, "data", str(out), preset="tiny")
    env = tp.child_env([stand_in])  # ahead of the real trainer, so the stand-in answers
    env["STAND_IN_MODE"] = mode
    return tp.TrainerProcess(cmd, str(out), env=env, cwd=stand_in).start()


def test_build_command_is_an_argument_list():
    cmd = tp.build_train_command(
        "/py",
        "/d",
        "/o",
        preset="fast",
        device="cpu",
        overrides={"final_resolution": 128, "tv_weight": 1e-5, "flag": True},
        resume=True,
    )
    assert cmd == [
        "/py",
        "-m",
        "trainer",
        "train",
        "--data",
        "/d",
        "--out",
        "/o",
        "--progress",
        "json",
        "--preset",
        "fast",
        "--device",
        "cpu",
        "--set",
        "final_resolution=128",
        "--set",
        "tv_weight=1e-05",
        "--set",
        "flag=true",
        "--resume",
    ]
    assert tp.build_train_command("/py", "/d", "/o", force=True)[-1] == "--force"
    threads = tp.build_train_command("/py", "/d", "/o", threads=3)
    assert threads[threads.index("--threads") + 1] == "3"
    assert "--threads" not in tp.build_train_command("/py", "/d", "/o", threads=0)  # torch's own count


def test_successful_run_reports_progress_and_writes_the_log(stand_in, tmp_path):
    out = tmp_path / "run"
    proc = _start(stand_in, out, "ok")
    seen = []
    code = proc.wait(on_events=lambda evs: seen.extend(e.kind for e in evs), interval=0.05)
    assert code == 0 and not proc.state.error and proc.state.finished
    assert proc.state.step == 20 and proc.state.test_psnr == 29.0
    assert proc.state.snapshot.endswith("snapshot.npz") and proc.state.snapshot_step == 10
    assert seen.count("progress") == 20 and seen[0] == "start" and seen[-1] == "done"
    assert (out / "train.log").read_text().startswith("loading data")


def test_failure_shows_the_trainers_error_line(stand_in, tmp_path):
    proc = _start(stand_in, tmp_path / "run", "fail")
    assert proc.wait(interval=0.05) == 2
    assert proc.state.error == "error: data/transforms_train.json: no frames"
    assert "no frames" in (tmp_path / "run" / "train.log").read_text()


def test_cancel_stops_the_child_cleanly_keeping_its_checkpoint(stand_in, tmp_path):
    out = tmp_path / "run"
    proc = _start(stand_in, out, "slow")
    deadline = time.time() + 20
    while proc.state.step < 1 and time.time() < deadline:
        proc.poll()
        time.sleep(0.05)
    assert proc.state.step >= 1
    proc.cancel(timeout=10)
    assert proc.returncode == 130 and not proc.running
    assert proc.state.error == "cancelled"
    assert (out / "checkpoint.pt").read_text() == "ckpt"
    with pytest.raises(ProcessLookupError):
        os.kill(proc.pid, 0)


def test_stop_all_leaves_no_orphan(stand_in, tmp_path):
    procs = [_start(stand_in, tmp_path / f"run{i}", "slow") for i in range(2)]
    time.sleep(0.5)
    tp.stop_all(timeout=10)
    assert all(p.returncode is not None for p in procs)


def test_interpreter_check_accepts_torch_and_refuses_a_bare_python(tmp_path):
    pytest.importorskip("torch")
    good = tp.check_interpreter(sys.executable, "test")
    assert good.ok, good.message
    import torch

    # the probe reports what this interpreter has and the device the trainer would pick
    assert good.torch_version == torch.__version__ and good.device == "cpu" and not good.cuda
    assert good.summary == f"torch {torch.__version__}, CPU, {torch.get_num_threads()} threads"
    bare_dir = tmp_path / "bare"
    venv.create(bare_dir, with_pip=False)
    bare = str(bare_dir / ("Scripts/python.exe" if os.name == "nt" else "bin/python"))
    bad = tp.check_interpreter(bare, "test")
    assert not bad.ok and "No module named" in bad.message  # the first of torch, tqdm, ... it lacks
    with pytest.raises(tp.TrainerNotFound, match="Install Trainer Environment"):
        tp.detect_interpreter(preferred=bare)
    assert tp.detect_interpreter(preferred=sys.executable).python == sys.executable
    missing = tp.check_interpreter(str(tmp_path / "nope"))
    assert not missing.ok and "not an executable" in missing.message


def test_a_package_folder_makes_a_bare_python_a_trainer(tmp_path):
    """The installed environment's shape: a plain Python plus a folder of packages on PYTHONPATH."""
    torch = pytest.importorskip("torch")
    bare_dir = tmp_path / "bare"
    venv.create(bare_dir, with_pip=False)
    bare = str(bare_dir / ("Scripts/python.exe" if os.name == "nt" else "bin/python"))
    site = str(Path(torch.__file__).resolve().parents[1])  # where this venv's torch and numpy live
    check = tp.check_interpreter(bare, "trainer environment", [site])
    assert check.ok and check.torch_version == torch.__version__, check.message
    assert check.pythonpath == (site,)


def test_candidates_follow_the_documented_order(monkeypatch, tmp_path):
    monkeypatch.setenv(tp.ENV_PYTHON, "/from/env/python")
    managed = tp.Candidate("/blender/python", "trainer environment", ("/user/trainer_env/packages",))
    cands = tp.candidate_interpreters("/from/prefs/python", managed)
    assert cands[0] == tp.Candidate("/from/prefs/python", "preferences")
    assert cands[1] == tp.Candidate("/from/env/python", f"${tp.ENV_PYTHON}")
    assert cands[2] == managed
    order = ["project environment", "PATH"]
    assert [c.source for c in cands[3:]] == sorted([c.source for c in cands[3:]], key=order.index)
    assert len({(c.python, c.pythonpath) for c in cands}) == len(cands)


def test_child_env_puts_the_environments_packages_before_the_trainer(tmp_path):
    env = tp.child_env(["/user/trainer_env/packages"], base={"PYTHONPATH": "/blender/scripts"})
    paths = env["PYTHONPATH"].split(os.pathsep)
    assert paths == ["/user/trainer_env/packages", tp.trainer_root()]
    assert Path(tp.trainer_root(), "trainer", "__init__.py").is_file()


def test_child_env_drops_blenders_python_home():
    env = tp.child_env(["/repo"], base={"PYTHONHOME": "/blender/python", "PYTHONPATH": "/x", "PATH": "/bin"})
    assert "PYTHONHOME" not in env and env["PYTHONPATH"].split(os.pathsep)[0] == "/repo"
    assert env["PYTHONUNBUFFERED"] == "1"
    assert env["PLENOX_EXIT_WITH_PARENT"] == "1"  # see tests/trainer/test_parent_watch.py


def test_schedule_overrides_for_a_final_resolution():
    assert tp.schedule_overrides(0, 0, "fast") == {}
    assert tp.schedule_overrides(0, 500, "fast") == {"steps": 500}
    assert tp.schedule_overrides(256, 1200, "fast") == {
        "steps": 1200,
        "resolutions": [64, 128, 256],
        "upsample_at": [150, 500],
    }
    assert tp.schedule_overrides(64, 0, "tiny") == {"resolutions": [32, 64], "upsample_at": [100]}
    assert tp.schedule_overrides(32, 0, "fast") == {"resolutions": [32], "upsample_at": []}


def test_schedule_matches_the_trainers_presets():
    config = pytest.importorskip("trainer.config")
    assert set(tp.PRESET_STEPS) == set(config.PRESETS)
    for name, steps in tp.PRESET_STEPS.items():
        assert config.PRESETS[name].steps == steps


def test_cancel_reaches_the_real_trainer_when_no_signal_can(tmp_path, monkeypatch):
    """On Windows CTRL_BREAK fails when Blender has no console to share with the child: the stop file
    alone must then take the trainer through its checkpoint-and-exit path."""
    pytest.importorskip("torch")
    from scenes import write_sphere_dataset

    data, out = tmp_path / "data", tmp_path / "run"
    write_sphere_dataset(data, n_train=8, n_test=2, width=16, height=16, aabb=[[-1, -1, -1], [1, 1, 1]])
    cmd = tp.build_train_command(sys.executable, str(data), str(out), preset="tiny",
                                 overrides={"steps": 1_000_000, "log_every": 1})
    proc = tp.TrainerProcess(cmd, str(out), env=tp.child_env()).start()
    deadline = time.time() + 120
    while proc.state.step < 3 and proc.running and time.time() < deadline:
        proc.poll()
        time.sleep(0.05)
    assert proc.state.step >= 3, proc.error_line()
    assert proc._popen is not None

    def undeliverable(sig):
        raise OSError(6, "The handle is invalid")  # what GenerateConsoleCtrlEvent says without a console

    monkeypatch.setattr(proc._popen, "send_signal", undeliverable)
    stop_file = proc._stop_file
    proc.cancel(timeout=60)
    assert proc.returncode == 130 and proc.cancelled and "interrupted" in proc.state.error
    assert (out / "checkpoint.pt").is_file()
    assert not os.path.exists(stop_file)  # nothing left in the temp folder
