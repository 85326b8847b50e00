"""Which torch device a run uses: `auto` is CUDA, then Apple's MPS, then the CPU.

torch is imported inside the functions: the config and the command line import this module for its
names before they load torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


class DeviceError(ValueError):
    """A device that is unknown or that this torch cannot use; str(e) is one line."""


def _mps_available() -> bool:
    import torch

    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def resolve_device(name: str) -> torch.device:
    """The torch device for a config's or a command line's device name."""
    import torch

    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise DeviceError(f"--device cuda: CUDA is not available to this torch ({torch.__version__})")
    if name == "mps" and not _mps_available():
        backend = getattr(torch.backends, "mps", None)
        why = ("it was built without MPS" if backend is None or not backend.is_built()
               else "MPS needs macOS 12.3 or later on Apple silicon")
        raise DeviceError(f"--device mps: Apple's MPS is not available to this torch ({torch.__version__}; {why})")
    if name not in DEVICE_CHOICES:
        raise DeviceError(f"--device {name}: expected {', '.join(DEVICE_CHOICES[:-1])} or {DEVICE_CHOICES[-1]}")
    return torch.device(name)


def describe_device(device: torch.device) -> dict[str, Any]:
    """JSON-able: {"device": "cuda"|"mps"|"cpu", "name": ..., "threads": (CPU only), "torch": version}."""
    import torch

    info: dict[str, Any] = {"device": device.type}
    if device.type == "cuda":
        info["name"] = torch.cuda.get_device_name(device)
    elif device.type == "mps":
        info["name"] = "Apple GPU"
    else:
        info["name"] = "CPU"
        info["threads"] = torch.get_num_threads()
    info["torch"] = torch.__version__
    return info
