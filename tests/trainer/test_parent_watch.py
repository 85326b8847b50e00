"""A training whose parent is killed outright (Blender, SIGKILL) checkpoints and exits on its own."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cli_helpers import COMMAND, ENV, REPO
from scenes import write_sphere_dataset

pytestmark = pytest.mark.skipif(os.name != "posix", reason="the watch relies on POSIX re-parenting")

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
