"""Running the real `python -m trainer` in a subprocess, for the command-line tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(REPO)}
COMMAND = [sys.executable, "-m", "trainer"]


def run_trainer(*args: str | Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*COMMAND, *map(str, args)], check=False, cwd=REPO, env=ENV, capture_output=True,
                          text=True, timeout=timeout)


def start_trainer(*args: str | Path, stderr: Any) -> subprocess.Popen[str]:
    return subprocess.Popen([*COMMAND, *map(str, args)], cwd=REPO, env=ENV, stdout=subprocess.PIPE,
                            stderr=stderr, text=True)


def events(stdout: str) -> list[dict[str, Any]]:
    """Contract 3: every stdout line is a JSON object with an event name and a time."""
    parsed = [json.loads(line) for line in stdout.splitlines()]
    assert all(isinstance(e, dict) and isinstance(e.get("event"), str) and "time" in e for e in parsed)
    return parsed


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error: ")]
