"""Checks the trainer on a CUDA device against the same code on the CPU (run where a GPU is lent).

    python benchmarks/check_cuda.py

CI has no GPU, so this is the check of the one code path on CUDA: the tests' analytic sphere is
trained by both devices from the same start with the same rays (both draw them from one CPU
generator), and the grids must agree to float32 rounding after a step and stay close after many; a
CPU-trained grid must render the same image on both; a CUDA step's host synchronisations are
counted with the tests' watch; and each device's full `tiny` run is scored on a test view.
Prints one line per check and exits 1 if any fails.
"""

from __future__ import annotations

import dataclasses
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests" / "fixtures"), str(REPO / "tests" / "trainer")]

from scenes import write_sphere_dataset
from test_host_syncs import MAX_SYNCS_PER_STEP, NullSink, SyncWatch

from trainer.config import preset
from trainer.engine.grid import SparseGrid
from trainer.engine.metrics import psnr
from trainer.engine.render import render_image
from trainer.io.data import Dataset, load_dataset
from trainer.train import Trainer, occupancy_interval, render_options

# a second argument, "cpu", runs the script's own code here without a GPU (every check then compares
# the CPU with itself)
CPU, CUDA = torch.device("cpu"), torch.device(sys.argv[1] if len(sys.argv) > 1 else "cuda")
failures: list[str] = []


def check(name: str, ok: bool, detail: str) -> None:
    print(f"{'ok  ' if ok else 'FAIL'} {name}: {detail}", flush=True)
    if not ok:
        failures.append(name)


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().double().cpu(), b.detach().double().cpu()
    return float((a - b).norm() / b.norm().clamp(min=1e-30))


@contextmanager
def shared_rays(seed: int) -> Iterator[None]:
    """torch.randint / torch.rand on any device draw from one CPU generator instead, so that a CPU and
    a CUDA trainer seeded alike train on the same rays."""
    gen = torch.Generator().manual_seed(seed)
    real: dict[str, Callable[..., torch.Tensor]] = {"randint": torch.randint, "rand": torch.rand}

    def wrap(name: str) -> Callable[..., torch.Tensor]:
        def draw(*args: Any, generator: Any = None, device: Any = None, **kw: Any) -> torch.Tensor:
            return real[name](*args, generator=gen, **kw).to(device)
        return draw

    torch.randint, torch.rand = wrap("randint"), wrap("rand")  # type: ignore[assignment]
    try:
        yield
    finally:
        torch.randint, torch.rand = real["randint"], real["rand"]  # type: ignore[assignment]


def same_steps(data: Dataset, out: Path) -> None:
    cfg = dataclasses.replace(preset("tiny"), steps=300, prune_at=[], log_every=10**6)
    trainers = {name: Trainer(cfg, data, out / name, NullSink(), d) for name, d in (("cpu", CPU), ("cuda", CUDA))}
    for steps, bound in ((1, 1e-4), (40, 2e-2)):
        for t in trainers.values():
            with shared_rays(seed=steps):
                while t.step < steps:
                    t.train_step()
                    t.step += 1
                    if t.step % occupancy_interval(cfg.occupancy_every, t.grid.resolution) == 0:
                        t.grid.refresh_occupancy()
        c, g = trainers["cpu"].grid, trainers["cuda"].grid
        e_d, e_sh = rel(g.density, c.density), rel(g.sh, c.sh)
        check(f"grid after {steps} shared step(s)", max(e_d, e_sh) < bound,
              f"relative difference density {e_d:.2e}, SH {e_sh:.2e} (bound {bound:g})")


_tiny_runs: dict[str, tuple[SparseGrid, float]] = {}


def tiny_run(data: Dataset, out: Path, device: torch.device) -> tuple[SparseGrid, float]:
    """The `tiny` preset trained on `device` (grid, seconds), once per device: two checks read the CPU's."""
    if device.type not in _tiny_runs:
        t0 = time.perf_counter()
        cfg = dataclasses.replace(preset("tiny"), log_every=10**6)
        grid = Trainer(cfg, data, out / f"tiny_{device.type}", NullSink(), device).run().grid
        _tiny_runs[device.type] = (grid, time.perf_counter() - t0)
    return _tiny_runs[device.type]


def same_render(data: Dataset, out: Path) -> None:
    grid, _ = tiny_run(data, out, CPU)
    te, opts = data.test, render_options(preset("tiny"))
    cpu_image, gpu_image = (
        render_image(SparseGrid.from_grid_data(grid.to_grid_data({}), d), te.c2w[0].to(d), te.intrinsics[0].to(d),
                     te.width, te.height, data.background, opts=opts, supersample=2).cpu()
        for d in (CPU, CUDA))
    e = rel(gpu_image, cpu_image)
    check("render of one grid", e < 1e-4, f"relative difference {e:.2e}")


def syncs(data: Dataset, out: Path) -> None:
    cfg = dataclasses.replace(preset("tiny"), steps=40, resolutions=[16], upsample_at=[], prune_at=[],
                              batch_rays=256, tv_sigma=1e-5, tv_sh=1e-3, sparsity=1e-10, log_every=1000)
    t = Trainer(cfg, data, out / "syncs", NullSink(), CUDA)
    for _ in range(3):
        t.train_step()
        t.step += 1
    with SyncWatch() as watch:
        t.train_step()
    n = sum(watch.syncs.values())
    check("host synchronisations in a CUDA step", n <= MAX_SYNCS_PER_STEP, f"{n} ({dict(watch.syncs)})")


def full_runs(data: Dataset, out: Path) -> None:
    scores = {}
    te = data.test
    for name, d in (("cpu", CPU), ("cuda", CUDA)):
        grid, seconds = tiny_run(data, out, d)
        img = render_image(grid, te.c2w[0].to(d), te.intrinsics[0].to(d), te.width, te.height, data.background,
                           opts=render_options(preset("tiny")), supersample=2).cpu()
        scores[name] = psnr(img, te.images[0])
        print(f"     tiny on {d.type}: {scores[name]:.2f} dB in {seconds:.1f}s", flush=True)
    check("tiny run's test PSNR, CUDA against CPU", abs(scores["cuda"] - scores["cpu"]) < 1.0,
          f"{scores['cuda']:.2f} against {scores['cpu']:.2f} dB")


def main() -> int:
    if CUDA.type == "cuda" and not torch.cuda.is_available():
        print("no CUDA device: nothing to check")
        return 0
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name() if CUDA.type == 'cuda' else 'CPU'}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "sphere"
        write_sphere_dataset(root, n_train=12, n_test=1, width=32, height=32, aabb=[[-1, -1, -1], [1, 1, 1]])
        data = load_dataset(root)
        for part in (same_steps, same_render, syncs, full_runs):
            try:
                part(data, Path(tmp))
            except Exception as e:  # noqa: BLE001 (one broken part must not hide the others' results)
                check(part.__name__, False, f"{type(e).__name__}: {e}")
    print(f"{len(failures)} failed" if failures else "all passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
