"""Stop a training whose parent died without stopping it (Blender killed hard, or crashed).

The add-on asks for this with PLENOX_EXIT_WITH_PARENT=1. A daemon thread waits for the parent to end
and then raises the stop signal's KeyboardInterrupt in the main thread, which takes the usual cancel
path: checkpoint, exit 130, so the run can be resumed.

How to wait depends on the system, behind one interface (a waiter: a function that returns True once
the parent has ended, False if it can no longer tell):
- POSIX: an orphan is re-parented (to init or a subreaper), so poll os.getppid() for a change.
- Windows: the parent id never changes there, so open the parent process and wait on its handle.

The add-on's cancel also has a path that needs no signal at all, PLENOX_STOP_FILE: when the file it
names appears, the same interrupt is raised. On Windows CTRL_BREAK reaches a child only when both share
a console, which a Blender started without one does not have.
"""

from __future__ import annotations

import _thread
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

ENV_FLAG = "PLENOX_EXIT_WITH_PARENT"
ENV_STOP_FILE = "PLENOX_STOP_FILE"

Waiter = Callable[[], bool]


def poll_waiter(interval: float = 1.0) -> Waiter:
    """POSIX: returns once this process has been re-parented."""
    parent = os.getppid()

    def wait() -> bool:
        while os.getppid() == parent:
            time.sleep(interval)
        return True

    return wait


SYNCHRONIZE = 0x00100000
INFINITE = 0xFFFFFFFF
WAIT_OBJECT_0 = 0


def _kernel32() -> Any:
    import ctypes
    from ctypes import wintypes

    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)  # type: ignore[attr-defined]  # Windows only
    kernel32.OpenProcess.argtypes = (wintypes.DWORD, wintypes.BOOL, wintypes.DWORD)
    kernel32.OpenProcess.restype = wintypes.HANDLE
    kernel32.WaitForSingleObject.argtypes = (wintypes.HANDLE, wintypes.DWORD)
    kernel32.WaitForSingleObject.restype = wintypes.DWORD
    kernel32.CloseHandle.argtypes = (wintypes.HANDLE,)
    kernel32.CloseHandle.restype = wintypes.BOOL
    return kernel32


def handle_waiter(kernel32: Any = None) -> Waiter | None:
    """Windows: returns once the parent process has ended. None when the parent cannot be opened
    (already gone, or not ours to see); kernel32 is injectable so that this runs in tests anywhere."""
    k32 = kernel32 if kernel32 is not None else _kernel32()
    # Opened now, in the main thread before training starts: from then on the handle pins the parent's
    # process object, so a later process reusing its id cannot be mistaken for it.
    handle = k32.OpenProcess(SYNCHRONIZE, False, os.getppid())
    if not handle:
        return None

    def wait() -> bool:
        try:
            return bool(k32.WaitForSingleObject(handle, INFINITE) == WAIT_OBJECT_0)
        finally:
            k32.CloseHandle(handle)

    return wait


def platform_waiter(interval: float = 1.0) -> Waiter | None:
    return handle_waiter() if sys.platform == "win32" else poll_waiter(interval)


def interrupt_main() -> None:
    """The stop signal's path in the main thread: its handler (trainer.cli.sigterm_as_interrupt) runs
    there and raises KeyboardInterrupt. Simulated rather than sent with os.kill, which on Windows cannot
    deliver CTRL_BREAK to the process itself reliably. Without a Python handler for SIGTERM (the
    command installs one first) this does nothing."""
    _thread.interrupt_main(signal.SIGTERM)


def watch_parent(interval: float = 1.0, wait_for_parent: Waiter | None = None,
                 on_parent_exit: Callable[[], None] = interrupt_main) -> bool:
    """Starts the watch when the environment asks for it; returns whether it started.

    wait_for_parent: the waiter (default: this system's); on_parent_exit: what to do once it returns True.
    """
    if os.environ.get(ENV_FLAG) != "1":
        return False
    waiter = wait_for_parent if wait_for_parent is not None else platform_waiter(interval)
    if waiter is None:
        return False

    def watch() -> None:
        if waiter():
            on_parent_exit()

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()
    return True


def watch_stop_file(interval: float = 0.25, on_stop: Callable[[], None] = interrupt_main) -> bool:
    """Starts a thread that stops the run when the file named by PLENOX_STOP_FILE appears; returns
    whether it started. A file already there is a request from an earlier run, so it is removed."""
    path = os.environ.get(ENV_STOP_FILE)
    if not path:
        return False
    try:
        os.remove(path)
    except FileNotFoundError:
        pass

    def watch() -> None:
        while not os.path.exists(path):
            time.sleep(interval)
        on_stop()

    threading.Thread(target=watch, name="stop-file-watch", daemon=True).start()
    return True
