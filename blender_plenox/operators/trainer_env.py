"""Install Trainer Environment / Cancel / Remove: the preferences' buttons that give a user without any
Python of their own a trainer (utils/trainer_env.py does the work, bpy-free).

In the UI the install runs in the background: a timer polls it, redraws the preferences and shows a
progress bar in the status bar, so Blender never freezes. Headless (`-b`, the `bpy` module), where
timers never fire, the operator waits for the same installer to finish.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import bpy

if TYPE_CHECKING:
    from bpy.stub_internal.rna_enums import OperatorReturnItems
else:
    OperatorReturnItems = str

from .. import preferences
from ..utils import trainer_env as te
from ..utils.trainer_process import Candidate

POLL_S = 0.5
_job: te.EnvInstaller | None = None
_last: te.InstallState | None = None  # the finished install, for the preferences to report
_machine: te.Machine | None = None


def env_root() -> str:
    """The extension's user folder (kept across updates of the extension); a checkout registered as a
    plain add-on has none, so it uses a folder in Blender's user configuration."""
    try:
        return bpy.utils.extension_path_user(preferences.PACKAGE, create=True)
    except ValueError:
        return os.path.join(bpy.utils.user_resource("CONFIG"), "blender_plenox")


def installed() -> te.InstalledEnv | None:
    return te.installed_env(env_root())


def managed_candidate() -> Candidate | None:
    """The installed environment as a trainer interpreter, run by the Python it was made for."""
    env = installed()
    if env is None:
        return None
    python = env.python if os.path.isfile(env.python) else sys.executable
    return env.candidate(python)


def machine() -> te.Machine:
    global _machine
    if _machine is None:  # runs nvidia-smi: once per session, never while drawing
        _machine = te.detect_machine()
    return _machine


def running_job() -> te.EnvInstaller | None:
    return _job if _job is not None and not _job.state.finished else None


def last_result() -> te.InstallState | None:
    return _last


def _custom_args(prefs: Any) -> tuple[str, ...]:
    return te.split_pip_args(prefs.pip_args) if prefs is not None else ()


def _redraw() -> None:
    wm = bpy.context.window_manager
    for window in wm.windows if wm is not None else ():
        for area in window.screen.areas:
            area.tag_redraw()


def _draw_status(self: Any, context: Any) -> None:
    job = running_job()
    if job is not None:
        self.layout.progress(factor=job.state.fraction, text=f"Trainer environment: {job.state.status()}")


def _finish(job: te.EnvInstaller) -> str:
    """Clears the running job; returns the line to report."""
    global _job, _last
    _job, _last = None, job.state
    from . import train  # the interpreter cache must see the new (or removed) environment

    train.forget_interpreters()
    st = job.state
    if st.cancelled:
        return "Trainer environment: install cancelled, nothing left behind"
    if st.error:
        return f"Trainer environment: {st.error}"
    return f"Trainer environment installed: {st.summary}"


def _poll() -> float | None:
    """The UI timer: keeps the preferences and the status bar current until the install ends."""
    job = _job
    _redraw()
    if job is None:
        return None
    if not job.state.finished:
        return POLL_S
    line = _finish(job)
    bpy.types.STATUSBAR_HT_header.remove(_draw_status)
    print(f"[plenox] {line}")
    _redraw()
    return None


class PLENOX_OT_install_trainer_env(bpy.types.Operator):
    """Download PyTorch and the trainer's other packages with pip into this extension's user folder,
    for Blender's own Python (or the Environment Python set below) to run the trainer with"""

    bl_idname = "plenox.install_trainer_env"
    bl_label = "Install Trainer Environment"

    @classmethod
    def poll(cls, context: Any) -> bool:
        from .train import active_process

        return running_job() is None and active_process() is None

    def _start(self, context: Any) -> te.EnvInstaller | None:
        global _job
        prefs = preferences.get_preferences(context)
        custom = _custom_args(prefs)
        if not getattr(bpy.app, "online_access", True) and "--no-index" not in custom:
            self.report({"ERROR"}, "Online access is off (Preferences > System > Network): turn on "
                        "Allow Online Access to download PyTorch")
            return None
        python = bpy.path.abspath(prefs.env_python) if prefs is not None and prefs.env_python else sys.executable
        if not os.path.isfile(python):
            self.report({"ERROR"}, f"Environment Python {python}: no such file")
            return None
        choice = te.choose_torch(machine())
        _job = te.EnvInstaller(Path(env_root()), python, choice, custom).start()
        print(f"[plenox] installing the trainer environment in {env_root()} with {python}: {choice.description}")
        return _job

    def execute(self, context: Any) -> set[OperatorReturnItems]:
        """Blocking, for headless use (timers never fire under -b)."""
        job = self._start(context)
        if job is None:
            return {"CANCELLED"}
        shown = ""
        while not job.state.finished:
            time.sleep(POLL_S)
            if job.state.phase != shown:
                shown = job.state.phase
                print(f"[plenox] {job.state.status()}", flush=True)
        job.wait()
        line = _finish(job)
        print(f"[plenox] {line}")
        if job.state.error:
            self.report({"ERROR"}, line)
            return {"CANCELLED"}
        self.report({"INFO"}, line)
        return {"FINISHED"} if not job.state.cancelled else {"CANCELLED"}

    def invoke(self, context: Any, event: Any) -> set[OperatorReturnItems]:
        if bpy.app.background:
            return self.execute(context)
        if self._start(context) is None:
            return {"CANCELLED"}
        bpy.types.STATUSBAR_HT_header.append(_draw_status)
        bpy.app.timers.register(_poll, first_interval=POLL_S)
        return {"FINISHED"}


class PLENOX_OT_cancel_trainer_env(bpy.types.Operator):
    """Stop the environment install; the partly downloaded environment is deleted"""

    bl_idname = "plenox.cancel_trainer_env"
    bl_label = "Cancel Install"

    @classmethod
    def poll(cls, context: Any) -> bool:
        return running_job() is not None

    def execute(self, context: Any) -> set[OperatorReturnItems]:
        job = running_job()
        if job is not None:
            job.cancel()
        return {"FINISHED"}


class PLENOX_OT_remove_trainer_env(bpy.types.Operator):
    """Delete the trainer environment this add-on installed (PyTorch and the other packages)"""

    bl_idname = "plenox.remove_trainer_env"
    bl_label = "Remove Environment"

    @classmethod
    def poll(cls, context: Any) -> bool:
        from .train import active_process

        return running_job() is None and active_process() is None and installed() is not None

    def invoke(self, context: Any, event: Any) -> set[OperatorReturnItems]:
        return context.window_manager.invoke_confirm(self, event)  # type: ignore[no-any-return]

    def execute(self, context: Any) -> set[OperatorReturnItems]:
        global _last
        root = env_root()
        try:
            te.remove_env(root)
        except OSError as err:
            self.report({"ERROR"}, f"Could not remove {os.path.join(root, te.ENV_DIR)}: {err}")
            return {"CANCELLED"}
        _last = None
        from . import train

        train.forget_interpreters()
        self.report({"INFO"}, "Trainer environment removed")
        return {"FINISHED"}


def unregister_handlers() -> None:
    """Nothing outlives the add-on: a running install is cancelled (its partial folder removed)."""
    job = running_job()
    if job is not None:
        job.cancel()
        job.wait(timeout=30)
    if bpy.app.timers.is_registered(_poll):
        bpy.app.timers.unregister(_poll)
    try:
        bpy.types.STATUSBAR_HT_header.remove(_draw_status)
    except (ValueError, AttributeError):
        pass


classes = (PLENOX_OT_install_trainer_env, PLENOX_OT_cancel_trainer_env, PLENOX_OT_remove_trainer_env)
