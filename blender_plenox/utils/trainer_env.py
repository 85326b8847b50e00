"""The trainer environment the add-on installs for a user who has no Python with torch: PyTorch, numpy,
imageio and tqdm pip-installed into a folder of the extension's user directory, run by Blender's own
Python (or another Python the user picks) with that folder on PYTHONPATH. No bpy here.

Why a pip `--target` folder and not a venv: running pip with Blender's Python is the path add-ons
have used on every OS for years, whereas `python -m venv` from Blender's bundled Python needs parts of
the standard installer that Blender builds may not ship (the Windows venv launcher). A target folder
also holds no absolute paths, so it can be built under a temporary name and renamed into place:

    <root>/trainer_env/                 the finished environment
        packages/                       what pip installed (goes on the trainer's PYTHONPATH)
        env.json                        the Python it was made for, pip arguments, the probe's answer
    <root>/trainer_env.partial-XXXX/    an install in progress; removed on failure or cancel, and any
                                        left by a crash are removed when the next install starts
    <root>/install.log                  the last install's full output

An install runs in a background thread of child processes, so Blender's UI never waits on it; the
add-on polls `EnvInstaller.state` from a timer and can cancel it at any moment.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shlex
import shutil
import subprocess
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from .trainer_process import Candidate, check_interpreter

ENV_DIR = "trainer_env"
PACKAGES_DIR = "packages"
RECORD = "env.json"
LOG = "install.log"
PARTIAL_PREFIX = ENV_DIR + ".partial-"

TORCH_REQUIREMENT = "torch>=2.1"
OTHER_REQUIREMENTS = ("numpy", "imageio>=2.30", "tqdm")
TORCH_INDEX = "https://download.pytorch.org/whl/"
# CUDA builds PyTorch publishes, newest first, with the CUDA version each needs from the driver.
# CUDA 12 builds run on any CUDA 12 driver (minor-version compatibility); 12.8 is the first with the
# RTX 50 series' kernels.
CUDA_BUILDS = (((13, 0), "cu130"), ((12, 8), "cu128"), ((12, 0), "cu126"), ((11, 8), "cu118"))


# ---------------------------------------------------------------------------------------------------
# Which torch build fits this machine


@dataclass(frozen=True)
class Machine:
    system: str  # platform.system(): "Windows", "Darwin", "Linux"
    cuda_driver: tuple[int, int] | None = None  # highest CUDA version the NVIDIA driver supports
    gpu_name: str = ""


def nvidia_smi_path(system: str | None = None) -> str | None:
    system = system or platform.system()
    found = shutil.which("nvidia-smi")
    if found is None and system == "Windows":
        # the driver installs it here, but not always on PATH
        candidate = Path(os.environ.get("SystemRoot", r"C:\Windows")) / "System32" / "nvidia-smi.exe"
        found = str(candidate) if candidate.is_file() else None
    return found


def parse_nvidia_smi(text: str) -> tuple[tuple[int, int] | None, str]:
    """(CUDA version the driver supports, first GPU's name) from `nvidia-smi`'s table."""
    cuda = re.search(r"CUDA Version:\s*(\d+)\.(\d+)", text)
    name = re.search(r"^\|\s+\d+\s+(.+?)\s{2,}(?:On|Off)\s+\|", text, re.MULTILINE)
    return (
        (int(cuda.group(1)), int(cuda.group(2))) if cuda else None,
        name.group(1).strip() if name else "",
    )


def detect_machine(run: Callable[[list[str]], str] | None = None) -> Machine:
    """This machine's OS and NVIDIA driver (none when nvidia-smi is missing or fails)."""
    system = platform.system()
    smi = nvidia_smi_path(system)
    if smi is None or system == "Darwin":
        return Machine(system)

    def default_run(cmd: list[str]) -> str:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=20, check=True,
                              creationflags=_NO_WINDOW)
        return done.stdout

    try:
        text = (run or default_run)([smi])
    except (OSError, subprocess.SubprocessError):
        return Machine(system)
    cuda, name = parse_nvidia_smi(text)
    return Machine(system, cuda, name)


@dataclass(frozen=True)
class TorchChoice:
    pip_args: tuple[str, ...]  # where pip looks for torch (empty: PyPI's default build)
    description: str  # said in the preferences before and during the install


def choose_torch(machine: Machine) -> TorchChoice:
    """The PyTorch build for this machine: CUDA where an NVIDIA driver is present, PyPI's default on
    macOS (it includes the Apple GPU backend), a CPU-only build elsewhere (PyPI's default for Linux is
    a multi-GB CUDA build that a machine without an NVIDIA GPU cannot use)."""
    if machine.system == "Darwin":
        return TorchChoice((), "PyTorch for macOS (Apple GPU where present)")
    if machine.cuda_driver is not None:
        for needs, tag in CUDA_BUILDS:
            if machine.cuda_driver >= needs:
                gpu = f" for {machine.gpu_name}" if machine.gpu_name else ""
                return TorchChoice(("--index-url", TORCH_INDEX + tag), f"PyTorch with CUDA ({tag}){gpu}")
    if machine.system == "Windows":
        return TorchChoice((), "PyTorch for the CPU")  # PyPI's Windows build is the CPU one
    return TorchChoice(("--index-url", TORCH_INDEX + "cpu"), "PyTorch for the CPU")


def split_pip_args(text: str, windows: bool | None = None) -> tuple[str, ...]:
    """The preferences' pip Arguments as a list. On Windows backslashes are path separators, not
    escapes, so only quotes group words (and are dropped)."""
    windows = os.name == "nt" if windows is None else windows
    if not windows:
        return tuple(shlex.split(text))
    words = shlex.split(text, posix=False)
    return tuple(w[1:-1] if len(w) >= 2 and w[0] == w[-1] and w[0] in "\"'" else w for w in words)


# ---------------------------------------------------------------------------------------------------
# What an installed environment is


@dataclass(frozen=True)
class InstalledEnv:
    root: Path  # <root>/trainer_env
    record: dict[str, object]

    @property
    def packages(self) -> Path:
        return self.root / PACKAGES_DIR

    @property
    def python(self) -> str:
        return str(self.record.get("python", ""))

    def summary(self) -> str:
        """One line for the preferences, e.g. 'torch 2.5.1+cu124, CUDA: NVIDIA GeForce RTX 4070'."""
        return str(self.record.get("summary", "installed"))

    def candidate(self, python: str = "") -> Candidate:
        """For the interpreter search: the Python it was made for unless another is given."""
        return Candidate(python or self.python, "trainer environment", (str(self.packages),))


def installed_env(root: str | os.PathLike[str]) -> InstalledEnv | None:
    """The finished environment under `root`, or None (a partial install never counts)."""
    env_root = Path(root) / ENV_DIR
    try:
        record = json.loads((env_root / RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or not (env_root / PACKAGES_DIR).is_dir():
        return None
    return InstalledEnv(env_root, record)


def remove_env(root: str | os.PathLike[str]) -> bool:
    """Deletes the environment (and any partial install); True when there was something to delete."""
    removed = False
    for path in [Path(root) / ENV_DIR, *Path(root).glob(PARTIAL_PREFIX + "*")]:
        if path.exists():
            shutil.rmtree(path)
            removed = True
    return removed


def _install_env() -> dict[str, str]:
    """pip's environment: Blender's own PYTHONHOME/PYTHONPATH dropped (they belong to its embedded
    interpreter), never a prompt."""
    env = dict(os.environ)
    env.pop("PYTHONHOME", None)
    env.pop("PYTHONPATH", None)
    env["PYTHONUNBUFFERED"] = "1"
    env["PIP_NO_INPUT"] = "1"
    return env


# Children of Blender on Windows would each open a console window.
_NO_WINDOW: int = getattr(subprocess, "CREATE_NO_WINDOW", 0)


# ---------------------------------------------------------------------------------------------------
# Installing


@dataclass
class InstallState:
    phase: str = "Waiting"
    fraction: float = 0.0
    running: bool = False
    finished: bool = False
    cancelled: bool = False
    error: str = ""
    summary: str = ""  # the probe's line once finished
    started: float = field(default_factory=time.monotonic)
    log_tail: deque[str] = field(default_factory=lambda: deque(maxlen=12))

    def status(self) -> str:
        elapsed = int(time.monotonic() - self.started)
        return f"{self.phase} ({elapsed // 60}:{elapsed % 60:02d})"


class InstallCancelled(Exception):
    pass


class InstallFailed(Exception):
    """str(e) is the one line the user sees."""


# pip lines worth showing as the current activity
_PIP_ACTIVITY = re.compile(r"^\s*(Collecting|Downloading|Using cached|Processing|Installing collected|Successfully)")
_PIP_ERROR = re.compile(r"^\s*ERROR:\s*(.+)")


@dataclass
class EnvInstaller:
    """Installs the environment under `root` in a background thread. `state` is safe to read from the
    UI thread at any time; `cancel()` stops the running child and removes the partial folder."""

    root: Path
    python: str  # the interpreter the environment is made for (Blender's own by default)
    torch_choice: TorchChoice
    custom_pip_args: tuple[str, ...] = ()  # replace the automatic choice of where torch comes from
    state: InstallState = field(default_factory=InstallState)
    _thread: threading.Thread | None = None
    _child: subprocess.Popen[str] | None = None
    _cancel: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def log_path(self) -> Path:
        return self.root / LOG

    def start(self) -> EnvInstaller:
        self.state = InstallState(phase="Starting", running=True)
        self._thread = threading.Thread(target=self._run, name="trainer-env-install", daemon=True)
        self._thread.start()
        return self

    def cancel(self) -> None:
        self._cancel.set()
        with self._lock:
            if self._child is not None and self._child.poll() is None:
                self._child.terminate()

    def wait(self, timeout: float | None = None) -> InstallState:
        if self._thread is not None:
            self._thread.join(timeout)
        return self.state

    # -- the work, on the background thread ------------------------------------------------------

    def _run(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        for stale in self.root.glob(PARTIAL_PREFIX + "*"):
            shutil.rmtree(stale, ignore_errors=True)
        partial = Path(tempfile.mkdtemp(prefix=PARTIAL_PREFIX, dir=self.root))
        try:
            with open(self.log_path, "w", encoding="utf-8") as log:
                self._install(partial, log)
            self.state.phase = "Installed"
        except InstallCancelled:
            self.state.cancelled = True
            self.state.phase = "Cancelled"
        except InstallFailed as err:
            self.state.error = str(err)
            self.state.phase = "Failed"
        except Exception as err:  # noqa: BLE001  # the UI must hear of any failure, not a dead thread
            self.state.error = f"{type(err).__name__}: {err}"
            self.state.phase = "Failed"
        finally:
            shutil.rmtree(partial, ignore_errors=True)
            self.state.running = False
            self.state.finished = True

    def _install(self, partial: Path, log: TextIO) -> None:
        packages = partial / PACKAGES_DIR
        pip = [self.python, "-m", "pip"]
        try:
            self._step("Checking pip", [*pip, "--version"], log, (0.0, 0.01))
        except InstallFailed:
            # Some Python builds leave pip out; ensurepip brings it from the standard library, into
            # the user's site-packages since Blender's own folder may be read-only.
            self._step("Installing pip", [self.python, "-m", "ensurepip", "--user"], log, (0.01, 0.03),
                       failure=f"{self.python} has no pip and ensurepip could not install it")
        common = ["install", "--target", str(packages), "--no-input", "--progress-bar", "off",
                  "--disable-pip-version-check", "--no-warn-script-location"]
        torch_args = list(self.custom_pip_args or self.torch_choice.pip_args)
        self._step(f"Installing {self.torch_choice.description}",
                   [*pip, *common, *torch_args, TORCH_REQUIREMENT], log, (0.03, 0.75))
        # The rest comes from PyPI (a torch index need not carry imageio); custom arguments apply too.
        self._step("Installing numpy, imageio and tqdm",
                   [*pip, *common, *self.custom_pip_args, *OTHER_REQUIREMENTS], log, (0.75, 0.9))
        self._check_cancel()
        self.state.phase = "Checking the environment"
        check = check_interpreter(self.python, "trainer environment", [str(packages)])
        log.write(f"$ {self.python} -m trainer devices\n{check.message}\n")
        self._check_cancel()
        if not check.ok:
            raise InstallFailed(f"the new environment cannot run the trainer: {check.message}")
        record = {
            "python": self.python,
            "torch_build": self.torch_choice.description,
            "pip_args": list(self.custom_pip_args or self.torch_choice.pip_args),
            "summary": check.summary,
            "device": check.device,
            "torch": check.torch_version,
            "installed": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
        (partial / RECORD).write_text(json.dumps(record, indent=2), encoding="utf-8")
        self._check_cancel()
        self._swap_into_place(partial)
        self.state.summary = check.summary
        self.state.fraction = 1.0

    def _swap_into_place(self, partial: Path) -> None:
        """The old environment stays usable until the new one is complete, then they trade places."""
        final = self.root / ENV_DIR
        old = None
        if final.exists():
            old = self.root / f"{ENV_DIR}.old-{os.getpid()}-{int(time.time())}"
            os.replace(final, old)
        os.replace(partial, final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)

    def _check_cancel(self) -> None:
        if self._cancel.is_set():
            raise InstallCancelled

    def _step(
        self,
        phase: str,
        cmd: list[str],
        log: TextIO,
        span: tuple[float, float],
        failure: str = "",
    ) -> str:
        """Runs one child to the end, streaming its output to the log and the state; returns stdout."""
        self._check_cancel()
        self.state.phase = phase
        self.state.fraction = span[0]
        log.write(f"$ {' '.join(cmd)}\n")
        with self._lock:
            self._check_cancel()
            self._child = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                encoding="utf-8",
                errors="replace",
                env=_install_env(),
                cwd=str(self.root),
                creationflags=_NO_WINDOW,
            )
        child = self._child
        assert child.stdout is not None
        output: list[str] = []
        errors: list[str] = []
        seen = 0
        for line in child.stdout:
            log.write(line)
            log.flush()
            output.append(line)
            text = line.strip()
            if not text:
                continue
            self.state.log_tail.append(text)
            if (m := _PIP_ERROR.match(text)) is not None:
                errors.append(m.group(1))
            elif _PIP_ACTIVITY.match(text):
                # Each package pip reaches moves the bar on, ever more slowly: pip says nothing of
                # how many are still to come.
                seen += 1
                self.state.fraction = span[0] + (span[1] - span[0]) * (1 - 0.85**seen)
                self.state.phase = f"{phase}: {text[:90]}"
        code = child.wait()
        self._check_cancel()
        if code != 0:
            first = errors[0] if errors else (self.state.log_tail[-1] if self.state.log_tail else "")
            reason = failure or first or f"exit code {code}"
            raise InstallFailed(f"{phase.split(':')[0]} failed: {reason} (log: {self.log_path})")
        self.state.fraction = span[1]
        return "".join(output)
