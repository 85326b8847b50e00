"""Checkpoints are written atomically: an interrupted write leaves the previous one whole."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from trainer.checkpoint import CheckpointError, load_checkpoint, save_checkpoint


def state(step: int) -> dict:
    g = torch.Generator().manual_seed(step)
    return {"step": step, "density": torch.randn(100, generator=g), "generator": g.get_state(),
            "numpy_rng": np.random.default_rng(step).bit_generator.state, "stages": [{"rays": 5}]}


def test_round_trip(tmp_path: Path) -> None:
    s = state(3)
    save_checkpoint(tmp_path / "run" / "checkpoint.pt", s)
    back = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert back["step"] == 3 and torch.equal(back["density"], s["density"])
    assert torch.equal(back["generator"], s["generator"]) and back["numpy_rng"] == s["numpy_rng"]


def test_interrupted_write_keeps_previous_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, state(1))
    real_save = torch.save

    def save_then_die(obj, f):  # type: ignore[no-untyped-def]
        real_save(obj, f)
        f.truncate(10)          # a torn file, then the signal arrives
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, state(2))
    monkeypatch.undo()
    assert load_checkpoint(path)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]


def test_missing_or_corrupt_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_checkpoint(tmp_path / "checkpoint.pt")
    (tmp_path / "checkpoint.pt").write_bytes(b"\x80\x04garbage")
    with pytest.raises(CheckpointError, match=f"{tmp_path / 'checkpoint.pt'}: unreadable checkpoint"):
        load_checkpoint(tmp_path / "checkpoint.pt")
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(CheckpointError, match="not a checkpoint"):
        load_checkpoint(tmp_path / "list.pt")
