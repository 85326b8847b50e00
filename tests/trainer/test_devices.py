"""Device choice: auto is CUDA, then Apple's MPS, then the CPU; unavailable devices are bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from cli_helpers import error_lines, run_trainer

from trainer.config import check_config, preset
from trainer.devices import DeviceError, describe_device, resolve_device

NO_GPU = not torch.cuda.is_available() and not torch.backends.mps.is_available()


def set_available(monkeypatch: pytest.MonkeyPatch, cuda: bool, mps: bool) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)


@pytest.mark.parametrize(("cuda", "mps", "expected"), [
    (True, True, "cuda"), (True, False, "cuda"), (False, True, "mps"), (False, False, "cpu")])
def test_auto_prefers_cuda_then_mps_then_cpu(monkeypatch: pytest.MonkeyPatch, cuda: bool, mps: bool,
                                             expected: str) -> None:
    set_available(monkeypatch, cuda, mps)
    assert resolve_device("auto") == torch.device(expected)


def test_explicit_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    set_available(monkeypatch, True, True)
    assert [resolve_device(n).type for n in ("cpu", "cuda", "mps")] == ["cpu", "cuda", "mps"]
    set_available(monkeypatch, False, False)
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(DeviceError, match=r"^--device cuda: CUDA is not available to this torch \(.+\)$"):
        resolve_device("cuda")
    with pytest.raises(DeviceError, match=r"^--device mps: Apple's MPS is not available to this torch \(.+\)$"):
        resolve_device("mps")
    with pytest.raises(DeviceError, match=r"^--device tpu: expected auto, cpu, cuda or mps$"):
        resolve_device("tpu")


@pytest.mark.skipif(not NO_GPU, reason="needs a machine without CUDA and MPS")
def test_auto_is_the_cpu_here() -> None:
    assert resolve_device("auto") == torch.device("cpu")


def test_describe_device(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu = describe_device(torch.device("cpu"))
    assert cpu == {"device": "cpu", "name": "CPU", "threads": torch.get_num_threads(), "torch": torch.__version__}
    assert json.loads(json.dumps(cpu)) == cpu
    # GPUs: described without touching one (torch.device objects exist without the hardware)
    assert describe_device(torch.device("mps")) == {"device": "mps", "name": "Apple GPU", "torch": torch.__version__}
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA Test 9000")
    assert describe_device(torch.device("cuda")) == {"device": "cuda", "name": "NVIDIA Test 9000",
                                                     "torch": torch.__version__}


def test_config_accepts_every_device_name() -> None:
    cfg = preset("tiny")
    for name in ("auto", "cpu", "cuda", "mps"):
        cfg.device = name
        check_config(cfg)
    cfg.device = "gpu"
    with pytest.raises(ValueError, match=r"^device: must be auto, cpu, cuda or mps, got 'gpu'$"):
        check_config(cfg)


@pytest.mark.skipif(not NO_GPU, reason="needs a machine without CUDA and MPS")
def test_devices_command() -> None:
    result = run_trainer("devices", "--threads", "1")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1
    assert json.loads(lines[0]) == {"device": "cpu", "name": "CPU", "threads": 1, "torch": torch.__version__}
    mps = run_trainer("devices", "--device", "mps")
    assert mps.returncode == 2 and len(error_lines(mps.stderr)) == 1
    assert "--device mps: Apple's MPS is not available" in mps.stderr


@pytest.mark.skipif(torch.backends.mps.is_available(), reason="needs a machine without MPS")
def test_train_on_mps_without_mps_is_bad_input(tmp_path: Path) -> None:
    result = run_trainer("train", "--data", tmp_path, "--out", tmp_path / "run", "--device", "mps")
    assert result.returncode == 2
    [line] = error_lines(result.stderr)
    assert line.startswith("error: --device mps: Apple's MPS is not available to this torch")
