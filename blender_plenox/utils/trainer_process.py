"""Runs `<python> -m trainer train ...` (contract 2) as a child process, without bpy.

Where the trainer's code comes from: the copy the extension zip carries (`bundled/trainer`, made by
scripts/build_extension.py), else the repository when the add-on runs from a checkout. It goes on the
child's PYTHONPATH; Blender's own Python never imports it.

Finding an interpreter: the one set in the preferences, else $BLENDER_PLENOX_PYTHON, else the trainer
environment the add-on installed (Blender's Python + a folder of pip-installed packages), else a
checkout's .venv, else python3/python on PATH; each is checked by actually running the trainer's device
probe in it (`python -m trainer devices`), because Blender's Python has neither torch nor the trainer.
The child's stdout carries progress events (contract 3) and is read on a thread into a queue, so
the UI timer never blocks; its stderr (the human log) goes to <out>/train.log.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .progress_events import ProgressEvent, TrainingState, parse_event

ENV_PYTHON = "BLENDER_PLENOX_PYTHON"
STOP_FILE_ENV = "PLENOX_STOP_FILE"  # contract 2: the trainer stops when this file appears
INSTALL_HINT = (
    "press Install Trainer Environment in Preferences > Add-ons > Plenox Reconstruct, "
    "or set Trainer Python there to a Python 3.10+ with PyTorch installed"
)
BUNDLED_DIR = "bundled"  # inside the installed extension: bundled/trainer/


class TrainerNotFound(RuntimeError):
    """No interpreter that can run the trainer; the message says what to install."""


def package_checkout_root() -> Path | None:
    """The repository root when the add-on runs from a checkout that also holds trainer/."""
    root = Path(__file__).resolve().parents[2]
    return root if (root / "trainer" / "__init__.py").is_file() else None


def trainer_root() -> str:
    """The folder that holds the `trainer` package: the extension's bundled copy, else the checkout's."""
    bundled = Path(__file__).resolve().parents[1] / BUNDLED_DIR
    if (bundled / "trainer" / "__init__.py").is_file():
        return str(bundled)
    return str(package_checkout_root() or "")


def _venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


@dataclass(frozen=True)
class Candidate:
    python: str
    source: str  # where it came from, said in messages
    pythonpath: tuple[str, ...] = ()  # package folders the child needs before the trainer's own


def candidate_interpreters(preferred: str = "", managed: Candidate | None = None) -> list[Candidate]:
    """The interpreters in the order they are tried, without duplicates. `managed` is the trainer
    environment the add-on installed, if any."""
    found: list[Candidate] = []
    if preferred:
        found.append(Candidate(os.path.expanduser(preferred), "preferences"))
    if os.environ.get(ENV_PYTHON):
        found.append(Candidate(os.environ[ENV_PYTHON], f"${ENV_PYTHON}"))
    if managed is not None:
        found.append(managed)
    checkout = package_checkout_root()
    if checkout is not None and _venv_python(checkout / ".venv").is_file():
        found.append(Candidate(str(_venv_python(checkout / ".venv")), "project environment"))
    for name in ("python3", "python"):
        path = shutil.which(name)
        if path:
            found.append(Candidate(path, "PATH"))
    seen: set[tuple[str, tuple[str, ...]]] = set()
    unique = []
    for cand in found:
        key = (cand.python, cand.pythonpath)
        if key not in seen:
            seen.add(key)
            unique.append(cand)
    return unique


def child_env(pythonpath: Sequence[str] = (), base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The child's environment: unbuffered stdout (events arrive as they happen), the trainer and the
    interpreter's extra package folders importable."""
    env = dict(os.environ if base is None else base)
    env["PYTHONUNBUFFERED"] = "1"
    # a training outlives nothing: if Blender dies without cancelling it, it checkpoints and exits
    env["PLENOX_EXIT_WITH_PARENT"] = "1"
    # Blender sets PYTHONHOME/PYTHONPATH for its own Python; another interpreter must not inherit them.
    env.pop("PYTHONHOME", None)
    env.pop("PYTHONPATH", None)
    paths = [*pythonpath, trainer_root()]
    paths = [p for p in paths if p]
    if paths:
        env["PYTHONPATH"] = os.pathsep.join(paths)
    return env


@dataclass(frozen=True)
class InterpreterCheck:
    python: str
    source: str
    ok: bool
    message: str
    torch_version: str = ""
    device: str = ""  # "cuda", "mps" or "cpu": what `--device auto` picks there
    pythonpath: tuple[str, ...] = ()
    summary: str = ""  # e.g. "torch 2.5.1, CUDA: NVIDIA GeForce RTX 4070"

    @property
    def cuda(self) -> bool:
        return self.device == "cuda"


def describe_devices(info: Mapping[str, object]) -> str:
    """`python -m trainer devices`' JSON as words, e.g. 'torch 2.5.1, CUDA: NVIDIA GeForce RTX 4070'."""
    kind = info.get("device")
    if kind == "cuda":
        where = f"CUDA: {info.get('name', 'GPU')}"
    elif kind == "mps":
        where = "Apple GPU (MPS)"
    else:
        where = f"CPU, {info.get('threads', '?')} threads"
    return f"torch {info.get('torch', '?')}, {where}"


def check_interpreter(
    python: str, source: str = "", pythonpath: Sequence[str] = (), timeout: float = 90.0
) -> InterpreterCheck:
    """Runs the trainer's device probe once in the interpreter: can it import torch and the trainer,
    and which device would it train on?"""
    paths = tuple(pythonpath)
    if not (os.path.isfile(python) and os.access(python, os.X_OK)):
        return InterpreterCheck(python, source, False, f"{python}: not an executable file", pythonpath=paths)
    try:
        res = subprocess.run(
            [python, "-m", "trainer", "devices"],
            capture_output=True,
            check=False,
            text=True,
            timeout=timeout,
            env=child_env(paths),
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return InterpreterCheck(python, source, False, f"{python}: could not run ({exc})", pythonpath=paths)
    if res.returncode != 0:
        lines = [ln for ln in res.stderr.strip().splitlines() if ln.strip()]
        last = lines[-1] if lines else f"exit code {res.returncode}"
        return InterpreterCheck(python, source, False, f"{python}: {last}", pythonpath=paths)
    try:
        info = json.loads(res.stdout.strip().splitlines()[-1])
    except (json.JSONDecodeError, IndexError):
        return InterpreterCheck(python, source, False, f"{python}: unexpected answer {res.stdout[:80]!r}",
                                pythonpath=paths)
    return InterpreterCheck(
        python,
        source,
        True,
        f"{python} ({describe_devices(info)})",
        torch_version=str(info.get("torch", "")),
        device=str(info.get("device", "")),
        pythonpath=paths,
        summary=describe_devices(info),
    )


def detect_interpreter(preferred: str = "", managed: Candidate | None = None) -> InterpreterCheck:
    """The first candidate that can run the trainer; TrainerNotFound (with what to install) otherwise."""
    tried = []
    for cand in candidate_interpreters(preferred, managed):
        check = check_interpreter(cand.python, cand.source, cand.pythonpath)
        if check.ok:
            return check
        tried.append(f"{cand.source}: {check.message}")
        if cand.source == "preferences":
            # An explicit choice that fails is an error to show, not something to silently replace.
            raise TrainerNotFound(f"Trainer Python {check.message}; {INSTALL_HINT}")
    detail = "; ".join(tried) if tried else "no Python interpreter found"
    raise TrainerNotFound(f"No Python that can run the trainer ({detail}); {INSTALL_HINT}")


def build_train_command(
    python: str,
    data: str,
    out: str,
    preset: str = "",
    overrides: Mapping[str, object] | None = None,
    resume: bool = False,
    force: bool = False,
    device: str = "",
    progress: str = "json",
    threads: int = 0,
) -> list[str]:
    """The argument list for contract 2's `train` (never a shell string). `threads` 0: torch's own
    count (one per core)."""
    cmd = [python, "-m", "trainer", "train", "--data", data, "--out", out, "--progress", progress]
    if preset:
        cmd += ["--preset", preset]
    if device:
        cmd += ["--device", device]
    if threads > 0:
        cmd += ["--threads", str(threads)]
    for key, value in (overrides or {}).items():
        text = json.dumps(value) if isinstance(value, (bool, list)) else str(value)
        cmd += ["--set", f"{key}={text}"]
    if resume:
        cmd.append("--resume")
    elif force:
        cmd.append("--force")
    return cmd


_LIVE: weakref.WeakSet[TrainerProcess] = weakref.WeakSet()


def stop_all(timeout: float = 10.0) -> None:
    """Stops every trainer this Python started (Blender quitting, a file being loaded, unregister)."""
    for proc in list(_LIVE):
        proc.cancel(timeout=timeout)


atexit.register(stop_all)


@dataclass
class TrainerProcess:
    """One running trainer: events arrive on a queue; poll() applies them to `state`."""

    cmd: Sequence[str]
    out_dir: str
    env: Mapping[str, str] | None = None
    cwd: str | None = None
    state: TrainingState = field(default_factory=TrainingState)
    log_name: str = "train.log"
    _popen: subprocess.Popen[bytes] | None = None
    _events: queue.Queue[ProgressEvent] = field(default_factory=queue.Queue)
    _stderr_tail: deque[str] = field(default_factory=lambda: deque(maxlen=40))
    _threads: list[threading.Thread] = field(default_factory=list)
    _stop_file: str = ""
    cancelled: bool = False

    def __hash__(self) -> int:
        return id(self)

    def start(self) -> TrainerProcess:
        kwargs: dict[str, object] = {}
        if os.name == "nt":
            kwargs["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP  # type: ignore[attr-defined]
        env = dict(self.env if self.env is not None else os.environ)
        # Cancel writes this file; the trainer watches for it (contract 2), since a signal may not reach it.
        fd, self._stop_file = tempfile.mkstemp(prefix="plenox-stop-", suffix=".request")
        os.close(fd)
        os.remove(self._stop_file)
        env[STOP_FILE_ENV] = self._stop_file
        self._popen = subprocess.Popen(
            list(self.cmd),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            cwd=self.cwd,
            **kwargs,  # type: ignore[call-overload]
        )
        _LIVE.add(self)
        self._threads = [
            threading.Thread(target=self._read_stdout, daemon=True),
            threading.Thread(target=self._read_stderr, daemon=True),
        ]
        for t in self._threads:
            t.start()
        return self

    @property
    def pid(self) -> int:
        return self._popen.pid if self._popen else -1

    @property
    def returncode(self) -> int | None:
        return self._popen.poll() if self._popen else None

    @property
    def running(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    @property
    def log_path(self) -> str:
        return os.path.join(self.out_dir, self.log_name)

    def _read_stdout(self) -> None:
        assert self._popen and self._popen.stdout
        for raw in self._popen.stdout:
            ev = parse_event(raw)
            if ev is not None:
                self._events.put(ev)

    def _read_stderr(self) -> None:
        # The trainer creates out_dir itself (it refuses an existing one without --resume/--force),
        # so lines wait in memory until the directory exists, then go to train.log.
        assert self._popen and self._popen.stderr
        lines = iter(self._popen.stderr)
        pending: list[str] = []
        for raw in lines:
            pending.append(self._remember(raw))
            if os.path.isdir(self.out_dir):
                break
        if not os.path.isdir(self.out_dir):
            return  # the trainer stopped before making its output directory: nowhere to keep a log
        with open(self.log_path, "a", encoding="utf-8") as log:
            log.writelines(pending)
            log.flush()
            for raw in lines:
                log.write(self._remember(raw))
                log.flush()

    def _remember(self, raw: bytes) -> str:
        line = raw.decode("utf-8", errors="replace")
        if line.strip():
            self._stderr_tail.append(line.rstrip())
        return line

    def poll(self) -> list[ProgressEvent]:
        """Events received since the last call, already applied to `state` (never blocks)."""
        got: list[ProgressEvent] = []
        while True:
            try:
                ev = self._events.get_nowait()
            except queue.Empty:
                break
            self.state.apply(ev)
            got.append(ev)
        return got

    def finish(self) -> None:
        """After the process has exited: drain the readers and turn a failed exit into an error."""
        for t in self._threads:
            t.join(timeout=5.0)
        self.poll()
        _LIVE.discard(self)
        if self._stop_file:
            with contextlib.suppress(OSError):
                os.remove(self._stop_file)
        code = self.returncode
        if code not in (0, None) and not self.state.error:
            self.state.error = "cancelled" if self.cancelled else self.error_line(code)
        self.state.finished = True

    def error_line(self, code: int | None = None) -> str:
        """The trainer's one-line error (contract 2: `error: ...` on stderr), else the last log line."""
        lines = list(self._stderr_tail)
        for line in reversed(lines):
            if line.startswith("error:"):
                return line
        suffix = f" (exit code {code})" if code is not None else ""
        return (lines[-1] if lines else "the trainer stopped") + suffix

    def request_cancel(self) -> None:
        """Asks the trainer to stop without waiting (the UI keeps polling until it has exited): its
        stop file, and the stop signal where one can be delivered (SIGTERM; CTRL_BREAK on Windows,
        which fails when Blender has no console to share with the child)."""
        if not (self.running and self._popen is not None):
            return
        self.cancelled = True
        if self._stop_file:
            with open(self._stop_file, "w", encoding="utf-8") as f:
                f.write("cancel\n")
        try:
            if os.name == "nt":
                self._popen.send_signal(signal.CTRL_BREAK_EVENT)  # type: ignore[attr-defined]
            else:
                self._popen.send_signal(signal.SIGTERM)
        except OSError:
            pass  # the stop file still stops it

    def kill(self) -> None:
        if self.running and self._popen is not None:
            self._popen.kill()

    def cancel(self, timeout: float = 10.0) -> None:
        """Asks the trainer to stop (it checkpoints on SIGTERM), then kills it after `timeout`."""
        if not self.running or self._popen is None:
            return
        self.request_cancel()
        try:
            self._popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._popen.kill()
            self._popen.wait()
        self.finish()

    def wait(
        self, on_events: Callable[[Iterable[ProgressEvent]], None] | None = None, interval: float = 0.2
    ) -> int:
        """Blocks until the trainer exits (headless runs, where UI timers never fire)."""
        assert self._popen is not None
        try:
            while self._popen.poll() is None:
                time.sleep(interval)
                evs = self.poll()
                if evs and on_events:
                    on_events(evs)
        except KeyboardInterrupt:
            self.cancel()
            raise
        self.finish()
        if on_events:
            on_events([])
        return int(self._popen.returncode)


def print_progress(
    proc: TrainerProcess, stream=sys.stdout, every: float = 2.0
) -> Callable[[Iterable[ProgressEvent]], None]:
    """An on_events callback for headless runs: a summary line at most every `every` seconds."""
    last = [0.0]

    def show(events: Iterable[ProgressEvent]) -> None:
        now = time.monotonic()
        for ev in events:
            if ev.kind in ("stage", "snapshot", "done", "error"):
                detail = {k: v for k, v in ev.data.items() if k not in ("event", "time")}
                print(f"[trainer] {ev.kind}: {json.dumps(detail)}", file=stream, flush=True)
        if now - last[0] >= every and not proc.state.finished:
            last[0] = now
            print(f"[trainer] {proc.state.summary()}", file=stream, flush=True)

    return show


# Step counts of the trainer's presets (trainer/config.py), needed only to place the upsampling steps
# when the panel overrides the final resolution without overriding the step count.
PRESET_STEPS = {"tiny": 300, "fast": 9000, "capture": 4000, "default": 12000, "quality": 9000}


def schedule_overrides(final_resolution: int, steps: int, preset: str) -> dict[str, object]:
    """`--set` values for a final resolution: coarse-to-fine by halving (up to three stages, none
    below 32), moving up after 1/3 of the steps (two stages) or after 1/8 and 5/12 (three)."""
    out: dict[str, object] = {}
    if steps > 0:
        out["steps"] = steps
    if final_resolution <= 0:
        return out
    total = steps if steps > 0 else PRESET_STEPS.get(preset, 3000)
    stages = [final_resolution]
    while len(stages) < 3 and stages[0] // 2 >= 32:
        stages.insert(0, stages[0] // 2)
    at = {1: [], 2: [total // 3], 3: [total // 8, total * 5 // 12]}[len(stages)]
    out["resolutions"] = stages
    out["upsample_at"] = at
    return out
