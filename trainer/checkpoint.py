"""Training checkpoints: written atomically so that a crash or a kill mid-write never leaves a torn file."""

from __future__ import annotations

import os
import pickle
import tempfile
from pathlib import Path
from typing import Any


class CheckpointError(ValueError):
    """str(e) is one line: 'PATH: problem'."""


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    import torch  # here, so that the command line's fast paths (info, bad options) skip loading torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        # BaseException: a SIGTERM/Ctrl-C arriving mid-write must not leave the temp file behind.
        Path(tmp).unlink(missing_ok=True)
        raise


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Loads onto the CPU; the caller moves tensors to its device.

    weights_only=False because a checkpoint also carries numpy/python RNG states; only ever load
    checkpoints this trainer wrote into a run directory you own.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no checkpoint")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: unreadable checkpoint ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from e
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: not a checkpoint (holds a {type(state).__name__}, not a dict)")
    return state
