"""Short trainings on an analytic sphere dataset: the fit improves, events flow, resume is exact."""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from trainer import train as train_module
from trainer.config import PRESETS, check_config, preset
from trainer.engine.grid import SparseGrid
from trainer.engine.metrics import psnr
from trainer.engine.render import render_image
from trainer.io.data import Dataset, load_dataset
from trainer.io.gridfile import load_grid
from trainer.train import Trainer, TrainingError, is_out_of_memory, occupancy_interval, run_training

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def sphere(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    import scenes  # tests/fixtures/scenes.py, on sys.path via tests/conftest.py

    root = tmp_path_factory.mktemp("sphere")
    scenes.write_sphere_dataset(root, n_train=24, n_test=3, width=24, height=24, aabb=[[-1, -1, -1], [1, 1, 1]])
    return load_dataset(root)


class ListSink:
    def __init__(self, stop_at: int | None = None) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.stop_at = stop_at

    def emit(self, event: str, **fields: Any) -> None:
        self.events.append((event, fields))
        if event == "progress" and fields["step"] == self.stop_at:
            raise KeyboardInterrupt


def small_config(**kw: Any) -> Any:
    base: dict[str, Any] = {
        "steps": 120, "resolutions": [12, 24], "upsample_at": [60], "prune_at": [30], "batch_rays": 512,
        "log_every": 10, "checkpoint_every": 0, "lr_sigma_delay_steps": 20, "tv_fraction": 0.1,
        "sh_degree": 1,
    }
    base.update(kw)
    return dataclasses.replace(preset("tiny"), **base)


@pytest.mark.parametrize("write_seconds", [0.0, 1.0])
def test_snapshots_take_at_most_a_tenth_of_the_run(sphere: Dataset, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch, write_seconds: float) -> None:
    # A large grid's snapshot takes seconds; the add-on asks for one every 250 steps. Here a write made
    # to last a second (as one of millions of voxels does) leaves the next ones undue until 9 s of
    # training have passed, which 40 steps of this small grid never reach; quick writes keep coming
    # (not necessarily every one: a write of a few ms wants a few tens of ms of training after it).
    real_save = train_module.save_grid

    def save(path: Path, grid: Any) -> None:
        time.sleep(write_seconds)
        real_save(path, grid)

    monkeypatch.setattr(train_module, "save_grid", save)
    cfg = small_config(steps=40, upsample_at=[], resolutions=[12], prune_at=[], snapshot_every=5)
    sink = ListSink()
    run_training(cfg, sphere, tmp_path, sink, resume=False, device=CPU)
    steps = [f["step"] for e, f in sink.events if e == "snapshot"]
    if write_seconds:
        assert steps == [5]
    else:
        assert steps[0] == 5 and len(steps) >= 3, steps


def test_a_cancel_while_the_grid_is_resampled_leaves_the_coarse_stage_whole(
        sphere: Dataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A cancel (SIGTERM becomes KeyboardInterrupt) during the upsampling's resampling, which takes seconds
    # on a large grid: the checkpoint must hold the coarse grid with the coarse stage's number, so that
    # the resumed run upsamples again (once the stage number ran ahead of its grid, and the run finished
    # at the coarse resolution).
    real_upsample = train_module.upsample

    def cancelled(*args: Any, **kwargs: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(train_module, "upsample", cancelled)
    cfg = small_config(steps=80, upsample_at=[40], prune_at=[20])
    with pytest.raises(KeyboardInterrupt):
        run_training(cfg, sphere, tmp_path, ListSink(), resume=False, device=CPU)
    saved = train_module.load_checkpoint(tmp_path / "checkpoint.pt")
    assert saved["step"] == 40 and saved["stage"] == 0
    monkeypatch.setattr(train_module, "upsample", real_upsample)
    sink = ListSink()
    result = run_training(cfg, sphere, tmp_path, sink, resume=True, device=CPU)
    assert result.step == 80 and max(result.grid.resolution) == 24
    assert [f["resolution"] for e, f in sink.events if e == "stage" and f["name"] == "upsample"] == [[24, 24, 24]]


def test_a_cancel_during_the_prune_after_an_upsampling_is_made_good_on_resuming(
        sphere: Dataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The fine grid is committed before the prune that follows it. A cancel during that prune once left
    # the checkpoint with the unpruned fine grid and nothing owed: the resumed run trained the whole
    # stage on every voxel the upsampling made.
    real_max_weights = train_module.max_weights
    calls = []

    def cancelled_on_the_third(*args: Any, **kwargs: Any) -> Any:
        calls.append(args[0].resolution)
        if len(calls) == 3:  # the scheduled prune, the one before upsampling, the one after
            raise KeyboardInterrupt
        return real_max_weights(*args, **kwargs)

    monkeypatch.setattr(train_module, "max_weights", cancelled_on_the_third)
    cfg = small_config(steps=60, upsample_at=[40], prune_at=[20])
    with pytest.raises(KeyboardInterrupt):
        run_training(cfg, sphere, tmp_path, ListSink(), resume=False, device=CPU)
    assert calls[-1] == (24, 24, 24)
    saved = train_module.load_checkpoint(tmp_path / "checkpoint.pt")
    assert saved["step"] == 40 and saved["stage"] == 1 and saved["pending_prune"] == "after upsampling"
    assert [s["resolution"] for s in saved["stages"]] == [[12, 12, 12], [24, 24, 24]]
    unpruned = SparseGrid.from_state_dict(saved["grid"]).n_active
    monkeypatch.setattr(train_module, "max_weights", real_max_weights)
    sink = ListSink()
    result = run_training(cfg, sphere, tmp_path, sink, resume=True, device=CPU)
    stages = [f for e, f in sink.events if e == "stage"]
    assert [(s["name"], s["message"], s["step"]) for s in stages] == [("prune", "after upsampling", 40)]
    assert stages[0]["voxels_before"] == unpruned > stages[0]["voxels_after"]
    assert result.step == 60 and result.stats["stages"][1]["prunes"][0]["before"] == unpruned


def test_psnr_rises_and_events_follow_contract_3(sphere: Dataset, tmp_path: Path) -> None:
    cfg = small_config(snapshot_every=60, snapshot_max_voxels=300)
    sink = ListSink()
    test = sphere.test

    def test_psnr(grid: Any) -> float:
        return sum(
            psnr(render_image(grid, test.c2w[i], test.intrinsics[i], test.width, test.height, sphere.background), test.images[i])
            for i in range(len(test.images))
        ) / len(test.images)

    result = run_training(cfg, sphere, tmp_path, sink, resume=False, device=CPU)
    names = [e for e, _ in sink.events]
    assert names[0] == "start" and "progress" in names and "snapshot" in names
    stages = [f for e, f in sink.events if e == "stage"]
    # the scheduled prune; at upsampling, a prune before the box is fitted and one after
    assert [s["name"] for s in stages] == ["prune", "prune", "upsample", "prune"]
    assert stages[1]["message"] == "before upsampling" and stages[1]["resolution"] == [12, 12, 12]
    assert stages[2]["resolution"] == [24, 24, 24]
    assert all(s["voxels_after"] <= s["voxels_before"] for s in stages if s["name"] == "prune")
    progress = [f for e, f in sink.events if e == "progress"]
    assert progress[-1]["step"] == 120 and progress[-1]["total"] == 120
    assert progress[-1]["psnr"] > progress[0]["psnr"] + 3.0
    assert (tmp_path / "checkpoint.pt").is_file() and (tmp_path / "snapshot.npz").is_file()
    snapshot = load_grid(tmp_path / "snapshot.npz")  # the last, at step 120: a preview of the final grid
    assert snapshot.metadata["snapshot"] is True and snapshot.metadata["step"] == 120
    assert snapshot.metadata["trained"] == {"resolution": list(result.grid.resolution),
                                            "voxels": result.grid.n_active, "sh_degree": 1}
    assert result.grid.n_active > 300 >= len(snapshot.density) > 0 and snapshot.sh_degree == 0
    # the uniform grey start scores far lower on held-out views than the trained grid
    start = type(result.grid).dense(12, result.grid.aabb, 1, 0.1 / (2.0 / 12))
    assert test_psnr(result.grid) > test_psnr(start) + 5.0
    assert test_psnr(result.grid) > 16.0
    stats = result.stats["stages"]
    assert len(stats) == 2 and all(s["rays_per_s"] > 0 for s in stats)


@pytest.mark.parametrize(("background_model", "pixel_jitter"), [("color", False), ("envmap", True)])
def test_resume_continues_exactly(sphere: Dataset, tmp_path: Path, background_model: str, pixel_jitter: bool) -> None:
    cfg = small_config(steps=40, upsample_at=[25], prune_at=[10], checkpoint_every=15, log_every=5,
                       background_model=background_model, pixel_jitter=pixel_jitter)
    full = run_training(cfg, sphere, tmp_path / "a", ListSink(), resume=False, device=CPU)
    with pytest.raises(KeyboardInterrupt):
        run_training(cfg, sphere, tmp_path / "b", ListSink(stop_at=20), resume=False, device=CPU)
    resumed = run_training(cfg, sphere, tmp_path / "b", ListSink(), resume=True, device=CPU)
    assert resumed.step == full.step == 40
    assert torch.equal(resumed.grid.links, full.grid.links)
    torch.testing.assert_close(resumed.grid.density, full.grid.density, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(resumed.grid.sh, full.grid.sh, atol=1e-5, rtol=1e-5)
    if background_model == "envmap":  # the map and its optimiser statistics come back too
        assert full.grid.background_map is not None and resumed.grid.background_map is not None
        assert float((full.grid.background_map - 0.5).abs().max()) > 1e-3  # it learnt something
        torch.testing.assert_close(resumed.grid.background_map, full.grid.background_map, atol=1e-5, rtol=1e-5)


def test_non_finite_loss_is_reported_with_its_step(sphere: Dataset, tmp_path: Path) -> None:
    cfg = small_config(steps=5, lr_sh=float("nan"))
    with pytest.raises(TrainingError, match=r"^step \d+: loss is NaN$"):
        run_training(cfg, sphere, tmp_path, ListSink(), resume=False, device=CPU)


def test_out_of_memory_is_recognised_on_every_device() -> None:
    # the texts torch raises (CUDA's is its own class; MPS's and the CPU allocator's are RuntimeErrors)
    assert is_out_of_memory(torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert is_out_of_memory(RuntimeError("MPS backend out of memory (MPS allocated: 7.1 GB, other allocations: "
                                         "1.2 GB, max allowed: 9.07 GB). Tried to allocate 256 MB on private pool."))
    assert is_out_of_memory(RuntimeError("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: "
                                         "can't allocate memory: you tried to allocate 583887488 bytes."))
    assert is_out_of_memory(MemoryError())
    assert not is_out_of_memory(RuntimeError("index 5 is out of bounds for dimension 0 with size 4"))
    assert not is_out_of_memory(ValueError("out of memory"))


def test_presets_are_valid() -> None:
    assert {"tiny", "fast", "default", "quality"} <= set(PRESETS)
    for cfg in PRESETS.values():
        check_config(cfg)
    with pytest.raises(ValueError, match="upsample_at"):
        check_config(small_config(upsample_at=[]))
    for name in ("max_minutes", "snapshot_max_voxels"):
        with pytest.raises(ValueError, match=f"^{name}: must be >= 0"):
            check_config(small_config(**{name: -1}))


def test_nonnegative_density_option_keeps_every_voxel_at_or_above_zero(sphere: Dataset, tmp_path: Path) -> None:
    result = run_training(
        small_config(steps=30, upsample_at=[20], prune_at=[10], nonnegative_density=True),
        sphere, tmp_path, ListSink(), resume=False, device=CPU,
    )
    assert float(result.grid.density.min()) >= 0.0
    plain = run_training(small_config(steps=30, upsample_at=[20], prune_at=[10]), sphere, tmp_path / "b", ListSink(),
                         resume=False, device=CPU)
    assert float(plain.grid.density.min()) < 0.0  # without the option RMSProp does push voxels below zero


@pytest.mark.parametrize("half_side", [1.0, 3.0])
def test_initial_fog_is_as_clear_for_any_box_size(sphere: Dataset, tmp_path: Path, half_side: float) -> None:
    # Density settings are in scene units (box spanning [-1, 1]): the initial field must let the same
    # light through a box of any size, about exp(-2 * init_density) along a ray through its middle.
    from trainer.engine.render import RenderOptions, render_rays
    from trainer.train import Trainer

    box = torch.tensor([[-half_side] * 3, [half_side] * 3])
    data = dataclasses.replace(sphere, aabb=box)
    cfg = small_config(init_density=0.1)
    trainer = Trainer(cfg, data, tmp_path, ListSink(), CPU)
    origin = torch.tensor([[-10.0 * half_side, 0.01, -0.02]])
    direction = torch.tensor([[1.0, 0.0, 0.0]])
    _, opacity = render_rays(trainer.grid, origin, direction, (1.0, 1.0, 1.0), RenderOptions())
    clear = 1.0 - float(opacity[0])
    # the outermost half voxel on each side fades to zero (empty outside), hence the loose bound
    assert clear == pytest.approx(math.exp(-0.2), rel=0.02)


class Float64Watch(TorchDispatchMode):
    """Records every torch op (forward, backward, factory, conversion) whose output holds float64:
    Apple's MPS has no float64 and most GPUs run it at a small fraction of float32's speed."""

    def __init__(self) -> None:
        super().__init__()
        self.ops = 0
        self.float64: list[str] = []

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        self.ops += 1
        if any(isinstance(t, torch.Tensor) and t.dtype in (torch.float64, torch.complex128)
               for t in tree_leaves(out)):
            self.float64.append(str(func))
        return out


def test_training_puts_no_float64_on_the_device(sphere: Dataset, tmp_path: Path) -> None:
    with Float64Watch() as probe:  # the watch itself sees a float64 op, so a silent one cannot pass
        torch.ones(2).double()
    assert probe.float64 and probe.ops >= 2
    # every loss and option on: colour + DC loss (SH degree 1), TV on density and SH, sparsity, beta,
    # non-negative density, pruning, upsampling into a fitted box, occupancy, snapshot, checkpoint
    cfg = small_config(steps=24, upsample_at=[14], prune_at=[6], batch_rays=256, log_every=4, snapshot_every=10,
                       checkpoint_every=10, tv_sigma=1e-5, tv_sh=1e-3, sparsity=1e-10, beta_loss=1e-4,
                       nonnegative_density=True, occupancy_every=2)
    with Float64Watch() as watch:
        result = run_training(cfg, sphere, tmp_path, ListSink(), resume=False, device=CPU)
    assert result.step == 24 and watch.ops > 1000
    assert watch.float64 == [], f"float64 during training: {sorted(set(watch.float64))}"


def test_the_occupancy_is_rebuilt_less_often_on_grids_larger_than_128_cubed() -> None:
    assert occupancy_interval(4, (64, 64, 64)) == 4
    assert occupancy_interval(4, (81, 128, 90)) == 4
    assert occupancy_interval(4, (256, 256, 256)) == 32   # 8x the cells, 8x the steps between rebuilds
    assert occupancy_interval(4, (151, 256, 170)) == 13
    assert occupancy_interval(0, (16, 16, 16)) == 1


def test_a_time_limit_runs_the_learning_rate_schedule_to_its_end(sphere: Dataset, tmp_path: Path) -> None:
    # a run that max_minutes stops should end at its final rates, not at its step count's share of them
    cfg = small_config(steps=1000, max_minutes=2.0)
    trainer = Trainer(cfg, sphere, tmp_path, ListSink(), CPU)
    trainer.step, trainer.elapsed = 250, 30.0  # a quarter of the steps, a quarter of the time
    assert math.isclose(trainer.schedule_progress(), 0.25)
    trainer.elapsed = 90.0                     # time runs ahead of the steps: time decides
    assert math.isclose(trainer.schedule_progress(), 0.75)
    trainer.step = 900                         # steps run ahead of the time: steps decide
    assert math.isclose(trainer.schedule_progress(), 0.9)
    trainer.elapsed = 150.0                    # past the limit: the end of the schedule, not beyond
    assert trainer.schedule_progress() == 1.0
    untimed = Trainer(small_config(steps=1000), sphere, tmp_path / "b", ListSink(), CPU)
    untimed.step, untimed.elapsed = 250, 1e6
    assert math.isclose(untimed.schedule_progress(), 0.25)


def test_a_structure_change_that_would_run_past_max_minutes_is_skipped(sphere: Dataset, tmp_path: Path) -> None:
    cfg = small_config(steps=100000, upsample_at=[2], prune_at=[], max_minutes=1.0)
    sink = ListSink()
    trainer = Trainer(cfg, sphere, tmp_path, sink, CPU)
    assert not trainer._runs_past_limit(upsampling=True)     # no speed measured yet: nothing to go on
    trainer.elapsed = 56.0                # seconds of steps left
    trainer._prune_rays_per_s = 1.0       # a pass would take hours: the run ends on the coarse grid
    assert trainer._runs_past_limit(upsampling=True) and trainer._runs_past_limit(upsampling=False)
    result = trainer.run()
    assert trainer.stage == 0 and max(result.grid.resolution) == 12 and 2 < result.step < 100000
    # the progress events' ETA is the time left, not the 100,000 steps' worth
    progress = [f for e, f in sink.events if e == "progress"]
    # (the last step may end past the limit: nothing is left then)
    assert progress and all(f["eta"] <= max(0.0, 60.0 - f["elapsed"]) + 1e-6 for f in progress)
    quick = Trainer(cfg, sphere, tmp_path / "b", ListSink(), CPU)
    quick.elapsed = 59.0
    quick._prune_rays_per_s = 1e12
    assert not quick._runs_past_limit(upsampling=True)
    assert not Trainer(small_config(), sphere, tmp_path / "c", ListSink(), CPU)._runs_past_limit(upsampling=True)
