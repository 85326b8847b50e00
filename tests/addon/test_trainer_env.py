"""The trainer environment installer (bpy-free half of Install Trainer Environment), with real pip.

A successful install of the real PyTorch runs in tests/blender/test_installed_extension.py, through
the installed extension; here: the choice of torch build, and that a failing or cancelled install
leaves nothing behind and keeps the environment that was there.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
from pathlib import Path

import pytest

from blender_plenox.utils import trainer_env as te

NVIDIA_SMI = """\
Tue Nov 24 10:00:00 2026
+-----------------------------------------------------------------------------------------+
| NVIDIA-SMI 560.35.03              Driver Version: 560.35.03      CUDA Version: 12.6     |
|-----------------------------------------+------------------------+----------------------+
| GPU  Name                 Persistence-M | Bus-Id          Disp.A | Volatile Uncorr. ECC |
|=========================================+========================+======================|
|   0  NVIDIA GeForce RTX 4070        Off |   00000000:01:00.0  On |                  N/A |
+-----------------------------------------+------------------------+----------------------+
"""


def test_nvidia_smi_gives_the_drivers_cuda_version_and_the_gpu():
    assert te.parse_nvidia_smi(NVIDIA_SMI) == ((12, 6), "NVIDIA GeForce RTX 4070")
    assert te.parse_nvidia_smi("NVIDIA-SMI has failed because it couldn't communicate") == (None, "")
    machine = te.detect_machine(run=lambda cmd: NVIDIA_SMI)
    if te.nvidia_smi_path() is None:  # no driver here: the fake output is never asked for
        assert machine.cuda_driver is None


@pytest.mark.parametrize(
    ("machine", "index"),
    [
        (te.Machine("Darwin"), None),  # PyPI's macOS build carries the Apple GPU backend
        (te.Machine("Windows"), None),  # PyPI's Windows build is the CPU one
        (te.Machine("Linux"), "cpu"),  # PyPI's Linux build is a multi-GB CUDA one
        (te.Machine("Windows", (12, 6), "RTX 4070"), "cu126"),
        (te.Machine("Linux", (12, 2)), "cu126"),  # CUDA 12 minor-version compatibility
        (te.Machine("Windows", (12, 9), "RTX 5090"), "cu128"),
        (te.Machine("Linux", (13, 1)), "cu130"),
        (te.Machine("Linux", (11, 8)), "cu118"),
        (te.Machine("Linux", (11, 4)), "cpu"),  # a driver too old for any CUDA build
    ],
)
def test_torch_build_fits_the_machine(machine: te.Machine, index: str | None):
    choice = te.choose_torch(machine)
    if index is None:
        assert choice.pip_args == ()
    else:
        assert choice.pip_args == ("--index-url", te.TORCH_INDEX + index)
    assert ("CUDA" in choice.description) == index.startswith("cu") if index else True


def test_pip_arguments_keep_windows_paths():
    assert te.split_pip_args('--no-index --find-links "D:\\My Wheels"', windows=True) == (
        "--no-index", "--find-links", "D:\\My Wheels")
    assert te.split_pip_args("--find-links D:\\wheels --proxy http://p:8080", windows=True) == (
        "--find-links", "D:\\wheels", "--proxy", "http://p:8080")
    assert te.split_pip_args("--find-links '/home/me/my wheels'", windows=False) == (
        "--find-links", "/home/me/my wheels")
    assert te.split_pip_args("   ", windows=False) == ()


def _fake_env(root: Path, marker: str) -> Path:
    env = root / te.ENV_DIR
    (env / te.PACKAGES_DIR).mkdir(parents=True)
    (env / te.RECORD).write_text(json.dumps({"python": sys.executable, "summary": marker}))
    return env


def test_only_a_finished_environment_counts_and_remove_deletes_it(tmp_path: Path):
    assert te.installed_env(tmp_path) is None
    (tmp_path / (te.PARTIAL_PREFIX + "abc") / te.PACKAGES_DIR).mkdir(parents=True)
    assert te.installed_env(tmp_path) is None
    _fake_env(tmp_path, "torch 9, CPU")
    env = te.installed_env(tmp_path)
    assert env is not None and env.summary() == "torch 9, CPU"
    cand = env.candidate()
    assert cand.python == sys.executable and cand.pythonpath == (str(tmp_path / te.ENV_DIR / te.PACKAGES_DIR),)
    assert te.remove_env(tmp_path)
    assert list(tmp_path.iterdir()) == []
    assert not te.remove_env(tmp_path)


@pytest.fixture(autouse=True)
def no_machine_pip_config(monkeypatch):
    """pip sees only the arguments a test gives, not this machine's configured wheel folders."""
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)


def _installer(root: Path, pip_args: tuple[str, ...]) -> te.EnvInstaller:
    return te.EnvInstaller(root, sys.executable, te.TorchChoice((), "PyTorch"), pip_args)


def test_a_failing_pip_leaves_nothing_and_keeps_the_old_environment(tmp_path: Path):
    root = tmp_path / "user"
    old = _fake_env(root, "the old one")
    (root / (te.PARTIAL_PREFIX + "crashed")).mkdir()  # left by an install that died
    empty = tmp_path / "no wheels here"
    empty.mkdir()
    state = _installer(root, ("--no-index", "--find-links", str(empty))).start().wait(timeout=300)
    assert state.finished and not state.running and not state.cancelled
    # one line, naming the step, pip's reason and the log
    assert state.error.startswith("Installing PyTorch failed: ") and "torch" in state.error, state.error
    assert "\n" not in state.error and str(root / te.LOG) in state.error
    assert sorted(p.name for p in root.iterdir()) == sorted([te.ENV_DIR, te.LOG])
    env = te.installed_env(root)
    assert env is not None and env.root == old and env.summary() == "the old one"
    assert "No matching distribution" in (root / te.LOG).read_text()


@pytest.fixture()
def silent_index():
    """An index URL on loopback that accepts connections and never answers, so pip waits."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}/simple"
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    server.close()


def test_cancel_stops_pip_and_leaves_nothing(tmp_path: Path, silent_index: str):
    root = tmp_path / "user"
    job = _installer(root, ("--index-url", silent_index, "--timeout", "120", "--retries", "0")).start()
    deadline = time.monotonic() + 60
    while not job.state.phase.startswith("Installing PyTorch") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert job.state.phase.startswith("Installing PyTorch"), job.state.phase
    time.sleep(1.0)  # pip is now waiting on the silent index
    assert job.state.running and 0.0 < job.state.fraction < 1.0
    started = time.monotonic()
    job.cancel()
    state = job.wait(timeout=30)
    assert state.finished and state.cancelled and not state.error
    assert time.monotonic() - started < 15  # not pip's 120 s timeout
    assert [p.name for p in root.iterdir()] == [te.LOG]
    assert te.installed_env(root) is None
