"""A training whose parent is killed outright (Blender, SIGKILL) checkpoints and exits on its own.

POSIX for real (the parent is killed); Windows through its waiter with a stand-in for kernel32, whose
wait on the parent's handle returns when the test says so.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import COMMAND, ENV, REPO
from scenes import write_sphere_dataset

from trainer import parent_watch
from trainer.cli import sigterm_as_interrupt

# The parent: starts the trainer with its progress going to a file, prints the trainer's pid, waits.
PARENT = """
import subprocess, sys, time
with open(sys.argv[1], "w") as log:
    child = subprocess.Popen(sys.argv[2:], stdout=log, stderr=subprocess.DEVNULL)
print(child.pid, flush=True)
time.sleep(3600)
"""


def exited(pid: int) -> bool:
    """Gone, or a zombie nobody reaps (in a container, pid 1 may not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state == "Z"


def wait_for(condition, timeout: float) -> bool:  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.2)
    return False


@pytest.mark.skipif(os.name != "posix", reason="the POSIX watch relies on re-parenting")
@pytest.mark.parametrize("watch", [True, False])
def test_orphaned_training_checkpoints_and_exits(tmp_path: Path, watch: bool) -> None:
    data, out, log = tmp_path / "data", tmp_path / "run", tmp_path / "events.jsonl"
    write_sphere_dataset(data, n_train=8, n_test=2, width=16, height=16, aabb=[[-1, -1, -1], [1, 1, 1]])
    env = {**ENV, "PLENOX_EXIT_WITH_PARENT": "1" if watch else "0"}
    cmd = [*COMMAND, "train", "--data", str(data), "--out", str(out), "--preset", "tiny", "--progress", "json",
           "--set", "steps=1000000", "--set", "log_every=1", "--device", "cpu", "--threads", "1"]
    parent = subprocess.Popen([sys.executable, "-c", PARENT, str(log), *cmd], cwd=REPO, env=env,
                              stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    try:
        assert wait_for(lambda: log.is_file() and '"progress"' in log.read_text(), 60), "training never started"
        parent.kill()
        parent.wait()
        if watch:
            assert wait_for(lambda: exited(child), 30), "the orphaned trainer kept running"
            events = [json.loads(line) for line in log.read_text().splitlines()]
            assert events[-1]["event"] == "error" and events[-1]["code"] == 130
            assert (out / "checkpoint.pt").is_file()
        else:
            # without the flag (a plain terminal run, say), the trainer is left alone
            assert not wait_for(lambda: exited(child), 3)
    finally:
        if not exited(child):
            os.kill(child, signal.SIGKILL)


# --- the watcher's parts, and the Windows branch with a stand-in kernel32 ----------------------------


class FakeKernel32:
    """OpenProcess / WaitForSingleObject / CloseHandle as the Windows waiter calls them."""

    def __init__(self, handle: int = 1234, wait_result: int = parent_watch.WAIT_OBJECT_0,
                 until: Callable[[], bool] = lambda: True) -> None:
        self.handle, self.wait_result, self.until = handle, wait_result, until
        self.calls: list[tuple[Any, ...]] = []

    def OpenProcess(self, access: int, inherit: bool, pid: int) -> int:
        self.calls.append(("open", access, inherit, pid))
        return self.handle

    def WaitForSingleObject(self, handle: int, timeout: int) -> int:
        self.calls.append(("wait", handle, timeout))
        while not self.until():
            time.sleep(0.05)
        return self.wait_result

    def CloseHandle(self, handle: int) -> bool:
        self.calls.append(("close", handle))
        return True


def test_windows_waiter_waits_on_the_parent_handle() -> None:
    k32 = FakeKernel32()
    waiter = parent_watch.handle_waiter(k32)
    assert waiter is not None and k32.calls == [("open", parent_watch.SYNCHRONIZE, False, os.getppid())]
    assert waiter() is True
    assert k32.calls[1:] == [("wait", 1234, parent_watch.INFINITE), ("close", 1234)]
    failed = parent_watch.handle_waiter(FakeKernel32(wait_result=0xFFFFFFFF))  # WAIT_FAILED: cannot tell
    assert failed is not None and failed() is False
    assert parent_watch.handle_waiter(FakeKernel32(handle=0)) is None  # the parent cannot be opened


def test_watch_runs_only_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    fired = threading.Event()
    monkeypatch.delenv(parent_watch.ENV_FLAG, raising=False)
    assert not parent_watch.watch_parent(wait_for_parent=lambda: True, on_parent_exit=fired.set)
    monkeypatch.setenv(parent_watch.ENV_FLAG, "1")
    assert parent_watch.watch_parent(wait_for_parent=lambda: False, on_parent_exit=fired.set)
    time.sleep(0.2)
    assert not fired.is_set()  # a waiter that cannot tell does not stop the run
    assert parent_watch.watch_parent(wait_for_parent=lambda: True, on_parent_exit=fired.set)
    assert fired.wait(5)


def test_parent_exit_interrupts_the_main_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(parent_watch.ENV_FLAG, "1")
    gone = threading.Event()
    with sigterm_as_interrupt():
        assert parent_watch.watch_parent(wait_for_parent=lambda: gone.wait(10))
        gone.set()
        with pytest.raises(KeyboardInterrupt):
            for _ in range(500):  # Python code running in the main thread, as the training loop's is
                time.sleep(0.01)
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_IGN  # the stop path's handler ran


# `python -c WINDOWS_PARENT TRIGGER ARGS...`: the trainer, with the Windows waiter on a stand-in kernel32
# whose wait on the parent's handle returns once the file TRIGGER exists.
WINDOWS_PARENT = """
import os, runpy, sys, time
from pathlib import Path
import trainer.parent_watch as pw

trigger = Path(sys.argv[1])

class Kernel32:
    def OpenProcess(self, access, inherit, pid):
        assert access == pw.SYNCHRONIZE and pid == os.getppid()
        return 1234
    def WaitForSingleObject(self, handle, timeout):
        while not trigger.exists():
            time.sleep(0.05)
        return pw.WAIT_OBJECT_0
    def CloseHandle(self, handle):
        return True

pw.platform_waiter = lambda interval=1.0: pw.handle_waiter(Kernel32())
sys.argv = ["trainer", *sys.argv[2:]]
runpy.run_module("trainer", run_name="__main__", alter_sys=True)
"""


def test_windows_branch_parent_exit_checkpoints_and_exits_130(tmp_path: Path) -> None:
    data, out, trigger = tmp_path / "data", tmp_path / "run", tmp_path / "parent_gone"
    write_sphere_dataset(data, n_train=8, n_test=2, width=16, height=16, aabb=[[-1, -1, -1], [1, 1, 1]])
    cmd = [sys.executable, "-c", WINDOWS_PARENT, str(trigger), "train", "--data", str(data), "--out", str(out),
           "--preset", "tiny", "--progress", "json", "--set", "steps=1000000", "--set", "log_every=1",
           "--device", "cpu", "--threads", "1"]
    proc = subprocess.Popen(cmd, cwd=REPO, env={**ENV, parent_watch.ENV_FLAG: "1"}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    try:
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if json.loads(line)["event"] == "progress":
                trigger.touch()
                break
        rest, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr[-2000:]
    last = json.loads((lines + rest.splitlines())[-1])
    assert last["event"] == "error" and last["code"] == 130
    assert (out / "checkpoint.pt").is_file()


def test_stop_file_stops_the_run_and_a_stale_one_does_not(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stop = tmp_path / "stop.request"
    stop.write_text("from an earlier cancel")
    monkeypatch.setenv(parent_watch.ENV_STOP_FILE, str(stop))
    stopped = threading.Event()
    assert parent_watch.watch_stop_file(interval=0.02, on_stop=stopped.set)
    assert not stop.exists()  # the stale request was dropped ...
    assert not stopped.wait(0.3)  # ... and did not stop this run
    stop.write_text("cancel")
    assert stopped.wait(5.0)
    monkeypatch.delenv(parent_watch.ENV_STOP_FILE)
    assert not parent_watch.watch_stop_file(on_stop=stopped.set)
