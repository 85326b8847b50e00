"""Checkpoints are written atomically (an interrupted write leaves the previous one whole), and hold
no more than an exact resume needs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from trainer.engine.grid import SparseGrid, decode_voxels, encode_voxels
from trainer.io.checkpoint import CheckpointError, load_checkpoint, save_checkpoint


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


# --- compact checkpoints: voxels as an occupancy code, optimiser statistics only where they exist ----


@pytest.mark.parametrize("resolution, fill, gap", [((8, 8, 8), 0.5, 0), ((32, 32, 32), 0.02, 0),
                                                   ((64, 64, 64), 0.001, 0), ((40, 50, 60), 0.01, 70000),
                                                   ((16, 16, 16), 0.0, 0), ((4, 4, 4), 1.0, 0)])
def test_voxel_code_round_trip(resolution: tuple[int, int, int], fill: float, gap: int) -> None:
    cells = int(np.prod(resolution))
    rng = np.random.default_rng(0)
    flat = np.flatnonzero(rng.uniform(size=cells) < fill)
    if gap:   # a gap too wide for 16 bits: the deltas need 32
        flat = np.unique(np.concatenate([flat[flat < 10], flat[flat >= 10 + gap]]))
    code = encode_voxels(flat, resolution)
    assert np.array_equal(decode_voxels(code, resolution), flat)
    nbytes = next(iter(code.values())).numel() * next(iter(code.values())).element_size()
    # the smaller of one bit per cell and the narrowest deltas, never more than 4 bytes a voxel here
    assert nbytes <= max(1, min((cells + 7) // 8, 4 * len(flat)))


def _trained_trainer(tmp_path: Path, sh_degree: int):  # type: ignore[no-untyped-def]
    import dataclasses

    from scenes import write_sphere_dataset

    from trainer.config import preset
    from trainer.io.data import load_dataset
    from trainer.io.events import NullEventSink
    from trainer.train import Trainer

    write_sphere_dataset(tmp_path / "d", n_train=8, n_test=1, width=16, height=16, aabb=[[-1, -1, -1], [1, 1, 1]])
    cfg = dataclasses.replace(preset("tiny"), steps=40, resolutions=[16, 24], upsample_at=[20], prune_at=[10],
                              batch_rays=256, sh_degree=sh_degree, checkpoint_every=0)
    trainer = Trainer(cfg, load_dataset(tmp_path / "d"), tmp_path / "run", NullEventSink(), torch.device("cpu"))
    (tmp_path / "run").mkdir()
    trainer.run()
    return trainer


def _v1_state(trainer) -> dict:  # type: ignore[no-untyped-def]
    """The same training state as version 1 wrote it: coordinates and the full statistics."""
    state = trainer.state()
    grid = {k: v for k, v in state["grid"].items() if k not in ("bitmask", "deltas")}
    grid["coords"] = trainer.grid.coords().to(torch.int32)
    state.update(version=1, grid=grid, sq_density=trainer.sq_density.clone(), sq_sh=trainer.sq_sh.clone())
    del state["optimiser"], state["scene_box"]
    return state


@pytest.mark.parametrize("sh_degree", [0, 2])
def test_checkpoint_is_exact_and_smaller_than_version_1(tmp_path: Path, sh_degree: int) -> None:
    trainer = _trained_trainer(tmp_path, sh_degree)
    assert bool((trainer.sq_sh == 0).all(1).any()), "some rows should have no statistics yet"
    save_checkpoint(tmp_path / "v2.pt", trainer.state())
    save_checkpoint(tmp_path / "v1.pt", _v1_state(trainer))
    n, k3 = trainer.grid.n_active, trainer.grid.sh.shape[1]
    v2, v1 = (tmp_path / "v2.pt").stat().st_size, (tmp_path / "v1.pt").stat().st_size
    assert v1 > n * (12 + 2 * 4 * (1 + k3))               # version 1: coordinates + values + statistics
    assert v2 < v1 - n * 8                                 # at least the coordinates' 12 bytes, less 4 for the code
    # what it holds: values and statistics as float32, occupancy and row bits, plus a fixed overhead
    rows_with_stats = int(((trainer.sq_density != 0) | (trainer.sq_sh != 0).any(1)).sum())
    assert v2 < n * 4 * (1 + k3) + rows_with_stats * 4 * (1 + k3) + n + 64 * 1024
    for path in (tmp_path / "v2.pt", tmp_path / "v1.pt"):
        restored = type(trainer)(trainer.cfg, _dataset_of(tmp_path), tmp_path / "run", _null(), torch.device("cpu"))
        restored.load(load_checkpoint(path))
        assert torch.equal(restored.grid.links, trainer.grid.links)
        assert torch.equal(restored.grid.density, trainer.grid.density) and torch.equal(restored.grid.sh, trainer.grid.sh)
        assert torch.equal(restored.sq_density, trainer.sq_density) and torch.equal(restored.sq_sh, trainer.sq_sh)
        assert restored.step == trainer.step and torch.equal(restored.aabb, trainer.aabb)
        assert restored.box.source == "aabb"


def _dataset_of(tmp_path: Path):  # type: ignore[no-untyped-def]
    from trainer.io.data import load_dataset

    return load_dataset(tmp_path / "d")


def _null():  # type: ignore[no-untyped-def]
    from trainer.io.events import NullEventSink

    return NullEventSink()


def test_grid_state_round_trip_keeps_row_order() -> None:
    rng = np.random.default_rng(2)
    coords = torch.from_numpy(np.unique(rng.integers(0, 20, (300, 3)), axis=0))
    n = coords.shape[0]
    grid = SparseGrid.from_coords((20, 20, 20), coords, torch.randn(n), torch.randn(n, 12), torch.tensor([[0.0] * 3, [1.0] * 3]), 1)
    back = SparseGrid.from_state_dict(grid.state_dict())
    assert torch.equal(back.links, grid.links) and torch.equal(back.density, grid.density)
    assert torch.equal(back.coords(), grid.coords())
