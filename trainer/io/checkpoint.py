"""Training checkpoints: written atomically so that a crash or a kill mid-write never leaves a torn file."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trainer.io.atomic import atomic_path

if TYPE_CHECKING:
    import torch


class CheckpointError(ValueError):
    """str(e) is one line: 'PATH: problem'."""


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    import torch  # here, so that the command line's fast paths (info, bad options) skip loading torch

    with atomic_path(Path(path)) as tmp, open(tmp, "wb") as f:
        torch.save(state, f)


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


def pack_rows(flags: torch.Tensor) -> torch.Tensor:
    """A bool vector [N] as bits, 8 to a byte (uint8 [ceil(N/8)], CPU); unpack_rows reverses it."""
    import numpy as np
    import torch

    return torch.from_numpy(np.packbits(flags.detach().cpu().numpy().astype(bool)))


def unpack_rows(packed: torch.Tensor, count: int) -> torch.Tensor:
    """The bool vector [count] that pack_rows packed (CPU)."""
    import numpy as np
    import torch

    return torch.from_numpy(np.unpackbits(packed.cpu().numpy(), count=count).astype(bool))
