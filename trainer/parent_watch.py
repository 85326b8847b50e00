"""Stop a training whose parent died without stopping it (Blender killed hard, or crashed).

The add-on asks for this with PLENOX_EXIT_WITH_PARENT=1. A daemon thread notices that the process was
re-parented and sends this process SIGTERM, which takes the usual cancel path: checkpoint, exit 130,
so the run can be resumed. POSIX only: on Windows the parent id does not change when the parent dies.
"""

from __future__ import annotations

import os
import signal
import threading
import time

ENV_FLAG = "PLENOX_EXIT_WITH_PARENT"


def watch_parent(interval: float = 1.0) -> bool:
    """Starts the watch when the environment asks for it; returns whether it started."""
    if os.environ.get(ENV_FLAG) != "1" or os.name != "posix":
        return False
    parent = os.getppid()

    def poll() -> None:
        while os.getppid() == parent:
            time.sleep(interval)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=poll, name="parent-watch", daemon=True).start()
    return True
