"""Train operators: run the trainer subprocess (modal with a timer in the UI, blocking under -b),
cancel it, and keep no orphan when Blender quits or loads another file."""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

import bpy

if TYPE_CHECKING:
    from bpy.stub_internal.rna_enums import OperatorReturnItems
else:
    OperatorReturnItems = str
from bpy.app.handlers import persistent

from .. import preferences
from ..utils import trainer_process as tp
from .import_mesh import import_mesh_with_settings
from .import_volume import import_with_settings, show_in_viewport

_active: tp.TrainerProcess | None = None
_checked: dict[str, tp.InterpreterCheck] = {}
KILL_AFTER_S = 15.0


def active_process() -> tp.TrainerProcess | None:
    return _active if _active is not None and _active.running else None


def resolve_dirs(context: Any) -> tuple[str, str]:
    scene = context.scene
    s: Any = scene.plenox
    base = os.path.join(preferences.default_output_dir(context), bpy.path.clean_name(scene.name))
    data = s.train.data_dir or s.capture.output_dir or os.path.join(base, "dataset")
    out = s.train.output_dir or os.path.join(base, "run")
    return os.path.abspath(bpy.path.abspath(data)), os.path.abspath(bpy.path.abspath(out))


def find_python(context: Any) -> tp.InterpreterCheck:
    """Checks (once per interpreter and session) that it can import torch and the trainer."""
    from .trainer_env import managed_candidate

    preferred = (
        bpy.path.abspath(preferences.trainer_python(context)) if preferences.trainer_python(context) else ""
    )
    key = preferred or "<auto>"
    if key not in _checked:
        _checked[key] = tp.detect_interpreter(preferred, managed_candidate())
    return _checked[key]


def forget_interpreters() -> None:
    """The next Train looks for an interpreter again (an environment was installed or removed)."""
    _checked.clear()


def build_command(context: Any, python: str) -> tuple[list[str], str]:
    s: Any = context.scene.plenox.train
    data, out = resolve_dirs(context)
    overrides: dict[str, object] = {}
    if not s.view_dependent:
        # One colour per voxel, asked for: SH degree 0 (3 coefficients per voxel instead of 27 at the
        # presets' degree 2, so faster and smaller). Otherwise the preset's degree, which the imported
        # volume evaluates from the view direction.
        overrides["sh_degree"] = 0
    if s.use_overrides:
        overrides.update(tp.schedule_overrides(s.final_resolution, s.steps, s.preset))
        overrides.update(prune_weight=s.prune_weight, tv_sigma=s.tv_sigma, tv_sh=s.tv_sh, sparsity=s.sparsity)
    if s.time_limit > 0:
        overrides["max_minutes"] = round(s.time_limit, 3)
    for pair in s.extra_overrides.split():  # the user's own settings win
        key, sep, value = pair.partition("=")
        if sep:
            overrides[key] = value
    if s.live_preview and not bpy.app.background:
        overrides["snapshot_every"] = s.snapshot_every
    resume = s.resume and os.path.isdir(out)
    force = s.overwrite and not resume
    cmd = tp.build_train_command(
        python,
        data,
        out,
        preset=s.preset,
        overrides=overrides,
        resume=resume,
        force=force,
        device=s.device if s.device != "auto" else "",
        threads=s.threads,
    )
    return cmd, out


def _import(context: Any, grid_path: str, name_suffix: str = "", final: bool = False) -> str:
    """Imports a grid; returns an error message ('' on success) instead of raising mid-modal. The live
    preview is always a Volume (quick, and what the trainer sees); the final grid is imported as the
    Import panel's *Import As* says."""
    try:
        if final and context.scene.plenox.import_settings.import_as == "MESH":
            import_mesh_with_settings(context, grid_path)
        else:
            import_with_settings(context, grid_path)
    except Exception as err:  # noqa: BLE001  # a bad snapshot must not end the run
        return f"import of {grid_path} failed{name_suffix}: {err}"
    return ""


def _finish(context: Any, proc: tp.TrainerProcess) -> None:
    s: Any = context.scene.plenox.train
    st = proc.state
    s.running = False
    s.log_path = proc.log_path
    if proc.returncode == 0 and not st.error:
        s.progress = 1.0
        s.error = ""
        s.can_resume = False
        s.last_grid = st.grid or os.path.join(proc.out_dir, "grid.npz")
        psnr = f", test PSNR {st.test_psnr:.2f} dB" if st.test_psnr is not None else ""
        limited = f" of {st.total} (the time limit)" if 0 < st.step < st.total else ""
        s.status = f"Done: {st.step} steps{limited}{psnr}"
        if s.import_when_done:
            problem = _import(context, s.last_grid, final=True)
            s.error = problem
    elif proc.cancelled:
        s.can_resume = os.path.isfile(os.path.join(proc.out_dir, "checkpoint.pt"))
        s.status = f"Cancelled at step {st.step}" + (
            " (checkpoint kept: Resume continues it)" if s.can_resume else ""
        )
        s.error = ""
    else:
        s.error = st.error or proc.error_line(proc.returncode)
        s.status = "Training failed: see the log"
        s.can_resume = os.path.isfile(os.path.join(proc.out_dir, "checkpoint.pt"))


class PLENOX_OT_train(bpy.types.Operator):
    """Train a Plenoxel grid on the dataset with the trainer subprocess (Cancel stops it, keeping its
    last checkpoint)"""

    bl_idname = "plenox.train"
    bl_label = "Train"
    bl_options = {"REGISTER"}  # noqa: RUF012  # Blender reads a plain set

    _timer: Any = None
    _proc: tp.TrainerProcess | None = None
    _cancel_at: float = 0.0

    @classmethod
    def poll(cls, context: Any) -> bool:
        return context.scene is not None and active_process() is None

    def _start(self, context: Any) -> tp.TrainerProcess | None:
        global _active
        s: Any = context.scene.plenox.train
        try:
            check = find_python(context)
        except tp.TrainerNotFound as err:
            s.error = str(err)
            s.status = "No trainer Python"
            self.report({"ERROR"}, str(err))
            return None
        cmd, out = build_command(context, check.python)
        data = cmd[cmd.index("--data") + 1]
        if not os.path.isdir(data):
            s.error = f"{data}: no dataset folder (capture one first, or set Dataset)"
            self.report({"ERROR"}, s.error)
            return None
        s.error = ""
        s.status = "Starting the trainer"
        s.progress = 0.0
        s.running = True
        s.log_path = os.path.join(out, "train.log")
        _active = tp.TrainerProcess(cmd, out, env=tp.child_env(check.pythonpath)).start()
        print("[plenox] " + " ".join(cmd))
        return _active

    def execute(self, context: Any) -> set[OperatorReturnItems]:
        """Blocking run, for headless use (timers never fire under -b)."""
        proc = self._start(context)
        if proc is None:
            return {"CANCELLED"}
        proc.wait(on_events=tp.print_progress(proc))
        _finish(context, proc)
        s: Any = context.scene.plenox.train
        print(f"[plenox] {s.status}" + (f"; {s.error}" if s.error else ""))
        if s.error:
            self.report({"ERROR"}, s.error)
            return {"CANCELLED"}
        return {"FINISHED"}

    def invoke(self, context: Any, event: Any) -> set[OperatorReturnItems]:
        if bpy.app.background:
            return self.execute(context)
        self._proc = self._start(context)
        if self._proc is None:
            return {"CANCELLED"}
        wm = context.window_manager
        self._timer = wm.event_timer_add(0.25, window=context.window)
        wm.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def modal(self, context: Any, event: Any) -> set[OperatorReturnItems]:
        if event.type != "TIMER" or event.timer is not self._timer:
            return {"PASS_THROUGH"}
        proc = self._proc
        assert proc is not None
        s: Any = context.scene.plenox.train
        events = proc.poll()
        st = proc.state
        s.progress = st.fraction
        s.status = ("Stopping… " if proc.cancelled else "") + st.summary()
        if any(e.kind == "snapshot" for e in events) and s.live_preview and st.snapshot:
            s.error = _import(context, st.snapshot, " (live preview)")
        if proc.cancelled and self._cancel_at == 0.0:
            self._cancel_at = time.monotonic()
        if proc.cancelled and time.monotonic() - self._cancel_at > KILL_AFTER_S:
            proc.kill()  # the trainer did not stop after SIGTERM: do not leave it running
        if context.workspace is not None:
            context.workspace.status_text_set(f"Plenoxels: {s.status}")
        for area in context.screen.areas if context.screen else ():
            if area.type == "VIEW_3D":
                area.tag_redraw()
        if proc.running:
            return {"PASS_THROUGH"}
        proc.finish()
        _finish(context, proc)
        context.window_manager.event_timer_remove(self._timer)
        if context.workspace is not None:
            context.workspace.status_text_set(None)
        if s.error:
            self.report({"ERROR"}, s.error)
        else:
            self.report({"INFO"}, s.status)
            show_in_viewport(context)
        return {"FINISHED"}


class PLENOX_OT_train_cancel(bpy.types.Operator):
    """Stop the running trainer; it writes a checkpoint first, so Resume can continue the run"""

    bl_idname = "plenox.train_cancel"
    bl_label = "Cancel Training"

    @classmethod
    def poll(cls, context: Any) -> bool:
        return active_process() is not None

    def execute(self, context: Any) -> set[OperatorReturnItems]:
        proc = active_process()
        if proc is not None:
            proc.request_cancel()
        return {"FINISHED"}


class PLENOX_OT_check_python(bpy.types.Operator):
    """Look for a Python that can run the trainer (torch and the trainer importable) and say which"""

    bl_idname = "plenox.check_python"
    bl_label = "Check Trainer Python"

    def execute(self, context: Any) -> set[OperatorReturnItems]:
        s: Any = context.scene.plenox.train
        forget_interpreters()
        try:
            check = find_python(context)
        except tp.TrainerNotFound as err:
            s.error = str(err)
            self.report({"ERROR"}, str(err))
            return {"CANCELLED"}
        s.error = ""
        s.status = f"Trainer Python: {check.message}"
        self.report({"INFO"}, s.status)
        return {"FINISHED"}


@persistent
def _stop_on_load(*_args: object) -> None:
    # Loading another file drops the operator that owns the process: stop it rather than orphan it.
    tp.stop_all()


def register_handlers() -> None:
    if _stop_on_load not in bpy.app.handlers.load_pre:
        bpy.app.handlers.load_pre.append(_stop_on_load)


def unregister_handlers() -> None:
    tp.stop_all()
    if _stop_on_load in bpy.app.handlers.load_pre:
        bpy.app.handlers.load_pre.remove(_stop_on_load)


classes = (PLENOX_OT_train, PLENOX_OT_train_cancel, PLENOX_OT_check_python)
