"""The training loop: batches of rays, losses, sparse RMSProp, coarse-to-fine upsampling and pruning.

Each step gathers only the rows its samples touch into small leaf tensors, so gradients and the
optimiser update cost O(touched rows), not O(active voxels).
"""

from __future__ import annotations

import dataclasses
import gc
import math
import os
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from trainer.config import TrainConfig, check_config
from trainer.devices import resolve_device  # noqa: F401  -- re-exported: benchmarks/bench_lego.py imports it here
from trainer.engine.background import blank_environment, environment_colours
from trainer.engine.colour import mid_grey, to_display, to_light
from trainer.engine.grid import SparseGrid
from trainer.engine.losses import beta_loss, cauchy_sparsity, mse, total_variation, tv_neighbours
from trainer.engine.optim import delayed_lr, log_lerp_lr, rmsprop_rows, touched_rows
from trainer.engine.pixel_rays import PixelRays
from trainer.engine.render import (
    RenderOptions,
    Samples,
    color_and_dc_pass,
    color_pass,
    density_pass,
    longest_ray,
    max_weights,
    visible_samples,
)
from trainer.engine.resample import fitted_box, preview_grid, prune, upsample
from trainer.engine.sh import C0, num_coeffs
from trainer.io.checkpoint import load_checkpoint, pack_rows, save_checkpoint, unpack_rows
from trainer.io.data import Dataset
from trainer.io.events import EventSink
from trainer.io.gridfile import save_grid
from trainer.io.scene_box import SceneBox, aabb_scene_box, camera_box, config_scene_box

# 2: voxel coordinates as an occupancy code, optimiser statistics only for the rows that have any,
# and the scene box (see Trainer.state). Version 1 checkpoints still load.
CHECKPOINT_VERSION = 2


class TrainingError(RuntimeError):
    """str(e) is one line, e.g. 'step 12: loss is NaN'."""


@dataclass
class TrainResult:
    grid: SparseGrid
    step: int
    elapsed: float
    stats: dict[str, Any] = field(default_factory=dict)  # "stages": one dict per resolution stage


def is_out_of_memory(err: BaseException) -> bool:
    """CUDA's OutOfMemoryError, Apple's MPS and the CPU allocator's RuntimeErrors, Python's MemoryError."""
    if isinstance(err, (MemoryError, torch.cuda.OutOfMemoryError)):
        return True
    text = str(err)
    return isinstance(err, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


def scene_box_for(cfg: TrainConfig, data: Dataset) -> SceneBox:
    """The box the grid spans and why: the config's scene_box, else the dataset's aabb, else
    instant-ngp's box for its aabb_scale, else the region its training cameras look at (with
    box_source=cameras: the config's scene_box, else the cameras' region)."""
    if cfg.scene_box is not None:
        return config_scene_box(cfg.scene_box)
    if cfg.box_source == "cameras":
        tr = data.train
        return camera_box(tr.c2w, tr.intrinsics, tr.width, tr.height)
    if data.aabb is not None:
        return aabb_scene_box(data.aabb)
    if data.ngp_box is not None:
        return data.ngp_box
    tr = data.train
    return camera_box(tr.c2w, tr.intrinsics, tr.width, tr.height)


# Training time between two snapshots, in units of the last one's write time: previews take at most
# about a tenth of a run.
SNAPSHOT_SPACING = 9.0


def scene_scale(aabb: torch.Tensor) -> float:
    """Half the longest side of the scene box: density in scene units = world density * this.

    svox2 normalises every scene into [-1, 1]^3 and states its learning rates, initial density and
    regulariser weights for densities in that frame; measuring density the same way lets the paper's
    numbers carry over to a box of any size. Fixed for the whole run (boxes fitted at upsampling
    do not change it).
    """
    return 0.5 * float((aabb[1] - aabb[0]).max())


def occupancy_interval(every: int, resolution: tuple[int, int, int]) -> int:
    """Steps between rebuilds of the march's occupancy mask: `every` on grids of up to 128^3 cells, and
    proportionally more on larger ones. A rebuild reads every cell, where a step's work follows its
    batch (lego at 151x256x170 on 2 cores: 52 ms a rebuild against ~90 ms a step). A stale mask costs
    little: samples in the segments it keeps read the current density, and a voxel whose density turns
    positive is a corner of a visible sample, next to a live voxel and well within the radius by which
    the mask is grown; only the part of it beyond the live voxels' box waits for the rebuild."""
    cells = resolution[0] * resolution[1] * resolution[2]
    return max(1, every, round(every * cells / 128**3))


def tv_difference_scale(voxel: float) -> float:
    """Factor on neighbour differences in the TV losses for voxels `voxel` long (scene units).

    svox2 scales differences by R/256 for a grid of R voxels across [-1, 1], i.e. 1 at 256^3: its TV
    weights are tuned at 256^3 and a coarser grid (larger voxel) is smoothed less per voxel pair.
    """
    return (2.0 / 256.0) / voxel


def render_options(cfg: TrainConfig) -> RenderOptions:
    return RenderOptions(cfg.step_size, cfg.stop_transmittance)


def _proc_rss_mb() -> float | None:
    """Linux: the resident set now (a stage's figure is the largest seen at its progress events)."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError, AttributeError):  # no /proc; no os.sysconf on Windows
        return None


def _rusage_peak_mb(platform: str = sys.platform) -> float | None:
    """POSIX without /proc (macOS, BSD): the process's peak resident set."""
    try:
        import resource  # POSIX only
    except ImportError:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if platform == "darwin" else peak / 1024  # bytes on macOS, KiB elsewhere


def _windows_peak_mb() -> float | None:
    """Windows: the process's peak working set (K32GetProcessMemoryInfo, kernel32 since Windows 7)."""
    if sys.platform != "win32":
        return None
    import ctypes
    from ctypes import wintypes

    class Counters(ctypes.Structure):  # PROCESS_MEMORY_COUNTERS
        _fields_ = [("cb", wintypes.DWORD), ("PageFaultCount", wintypes.DWORD),
                    ("PeakWorkingSetSize", ctypes.c_size_t), ("rest", ctypes.c_size_t * 7)]

    try:
        kernel32 = ctypes.WinDLL("kernel32")
        kernel32.GetCurrentProcess.restype = wintypes.HANDLE
        get_info = kernel32.K32GetProcessMemoryInfo
        get_info.argtypes = (wintypes.HANDLE, ctypes.POINTER(Counters), wintypes.DWORD)
        get_info.restype = wintypes.BOOL
        counters = Counters(cb=ctypes.sizeof(Counters))
        if not get_info(kernel32.GetCurrentProcess(), ctypes.byref(counters), counters.cb):
            return None
        return float(counters.PeakWorkingSetSize) / 2**20
    except (AttributeError, OSError):
        return None


def current_rss_mb() -> float | None:
    """Memory of this process in MiB, from whichever source the platform has; None when none answers."""
    for reader in (_proc_rss_mb, _rusage_peak_mb, _windows_peak_mb):
        value = reader()
        if value is not None:
            return value
    return None


def background_choice(cfg: TrainConfig, images_have_alpha: bool) -> str:
    """What rays see beyond the grid, and why, in one line: 'envmap HxW (reason)' or 'color (r, g, b) (reason)'."""
    model = cfg.background_model
    if model == "auto":
        model = "color" if images_have_alpha else "envmap"
        why = ("auto: the training images have alpha" if images_have_alpha else
               "auto: the training images have no alpha, so they show their surroundings")
    else:
        why = "background_model=" + model
    if model == "envmap":
        return f"envmap {cfg.background_height}x{2 * cfg.background_height} ({why})"
    return "color ({}) ({})".format(", ".join(f"{c:g}" for c in cfg.background), why)


def rows_remap(n_rows: int, touched: torch.Tensor) -> torch.Tensor:
    """position of each touched row in `touched`; 0 for the others (they only ever carry weight 0)."""
    pos = torch.zeros(n_rows, dtype=torch.int64, device=touched.device)
    pos.index_copy_(0, touched, torch.arange(touched.shape[0], device=touched.device))
    return pos


class Trainer:
    def __init__(self, cfg: TrainConfig, data: Dataset, out_dir: Path, sink: EventSink, device: torch.device,
                 box: SceneBox | None = None):
        """`box`: the scene box when the caller has already chosen it (default: scene_box_for)."""
        check_config(cfg)
        self.cfg = cfg
        self.out_dir = Path(out_dir)
        self.sink = sink
        self.device = device
        self.opts = render_options(cfg)
        self.background = torch.tensor(cfg.background, dtype=torch.float32, device=device)  # encoded
        self.background_light = to_light(self.background, cfg.color_space)
        tr = data.train
        self.rays = PixelRays(tr.c2w, tr.intrinsics, tr.width, tr.height, device)
        self.colors = tr.images.reshape(-1, 3).to(device=device, dtype=torch.float32)
        self.alpha = tr.alpha.reshape(-1).to(device) if tr.alpha is not None else None
        self.image_shape = (tr.images.shape[0], tr.height, tr.width)
        self.gen = torch.Generator(device=device)
        self.gen.manual_seed(cfg.seed)
        self.box = box if box is not None else scene_box_for(cfg, data)
        self.aabb = self.box.box.to(torch.float32)
        self.scene_scale = scene_scale(self.aabb)
        # version-1 checkpoints hold no box: theirs was the dataset's aabb, else the config's box
        self._v1_box = (aabb_scene_box(data.aabb) if data.aabb is not None else
                        config_scene_box(cfg.scene_box) if cfg.scene_box is not None else
                        config_scene_box([[-1.5] * 3, [1.5] * 3]))
        self.grid = self._initial_grid()
        self.sq_density = torch.zeros_like(self.grid.density)
        self.sq_sh = torch.zeros_like(self.grid.sh)
        self.background_choice = background_choice(cfg, tr.has_alpha)
        if self.background_choice.startswith("envmap"):
            self.grid.background_map = blank_environment(cfg.background_height, device, mid_grey(cfg.color_space))
            self.sq_background = torch.zeros_like(self.grid.background_map)
        self.step = 0
        self.stage = 0
        self.elapsed = 0.0
        self.stages: list[dict[str, Any]] = [self._stage_entry(self.grid)]  # one per resolution stage
        # a prune that a structure change owes and has not yet made (the one after an upsampling): saved
        # with the checkpoint, so that a run cancelled during it makes it on resuming
        self.pending_prune: str | None = None
        # (step, loss, MSE) of the steps since the losses were last read, as device scalars
        self._window: list[tuple[int, torch.Tensor, torch.Tensor]] = []
        self._prune_rays_per_s: float | None = None  # the last pruning pass's speed (max_minutes estimates)
        self._next_snapshot_at = 0.0  # self.elapsed before which no snapshot falls due

    # --- setup -------------------------------------------------------------------------------------
    def _strided_rays(self, views: int, height: int, width: int, stride: int) -> torch.Tensor:
        v, r, c = torch.meshgrid(
            torch.arange(views), torch.arange(0, height, stride), torch.arange(0, width, stride), indexing="ij"
        )
        return ((v * height + r) * width + c).reshape(-1).to(self.device)

    def _initial_grid(self) -> SparseGrid:
        grid = SparseGrid.dense(
            self.cfg.resolutions[0], self.aabb, self.cfg.sh_degree, self.cfg.init_density / self.scene_scale,
            self.cfg.init_sh, self.device,
        )
        grid.color_space = self.cfg.color_space
        # the DC colour C0·k + 0.5 starts at mid-grey (from linear 0.5 the tiny sphere trained to 13.3 dB,
        # not 26.2: docs/TRAINER.md)
        k = num_coeffs(grid.sh_degree)
        grid.sh[:, ::k] += (mid_grey(grid.color_space) - 0.5) / C0
        return grid

    def _stage_entry(self, grid: SparseGrid) -> dict[str, Any]:
        """A fresh stats entry for the stage that `grid` starts."""
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        return {
            "resolution": list(grid.resolution),
            "steps": 0,
            "rays": 0,
            "seconds": 0.0,
            "peak_rss_mb": current_rss_mb(),
            "voxels_start": grid.n_active,
            "prunes": [],
        }

    # --- checkpoint --------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """Everything a resumed run needs to continue exactly. The grid stores its voxels as an
        occupancy code rather than coordinates (SparseGrid.state_dict). RMSProp's statistics are zero
        for rows no gradient has reached since they were made (a fresh upsampling, voxels no ray
        sees), so only the rows with any are stored, with a bit per row saying which."""
        with torch.no_grad():
            sq_density = self.sq_density.detach()
            sq_sh = self.sq_sh.detach()
            has = (sq_density != 0) | (sq_sh != 0).any(1)
            rows = pack_rows(has.cpu())
            sq_density = sq_density[has].cpu().clone()
            sq_sh = sq_sh[has].cpu().clone()
        return {
            "version": CHECKPOINT_VERSION,
            "step": self.step,
            "stage": self.stage,
            "elapsed": self.elapsed,
            "grid": self.grid.state_dict(),
            "optimiser": {"rows": rows, "sq_density": sq_density, "sq_sh": sq_sh,
                          "sq_background": None if self.grid.background_map is None else self.sq_background.cpu().clone()},
            "generator": self.gen.get_state().cpu(),
            "stages": self.stages,
            "pending_prune": self.pending_prune,
            "config": dataclasses.asdict(self.cfg),
            "scene_box": self.box.to_json(),
        }

    def load(self, state: dict[str, Any]) -> None:
        version = state.get("version")
        if version not in (1, CHECKPOINT_VERSION):
            raise TrainingError(f"checkpoint: unsupported version {version!r}")
        self.grid = SparseGrid.from_state_dict(state["grid"], self.device)
        if self.grid.color_space != self.cfg.color_space:  # the images were composited for the config's
            raise TrainingError(f"checkpoint: its grid mixes colours in {self.grid.color_space}, the config says "
                                f"{self.cfg.color_space}; resume with --set color_space={self.grid.color_space}")
        if self.grid.background_map is not None:
            saved = state.get("optimiser", {}).get("sq_background")
            self.sq_background = (saved.to(self.device) if saved is not None else
                                  torch.zeros_like(self.grid.background_map))
        if version == 1:
            self.sq_density = state["sq_density"].to(self.device)
            self.sq_sh = state["sq_sh"].to(self.device)
            self.box = self._v1_box
        else:
            opt = state["optimiser"]
            has = unpack_rows(opt["rows"], self.grid.n_active).to(self.device)
            self.sq_density = torch.zeros_like(self.grid.density)
            self.sq_sh = torch.zeros_like(self.grid.sh)
            self.sq_density[has] = opt["sq_density"].to(self.device)
            self.sq_sh[has] = opt["sq_sh"].to(self.device)
            self.box = SceneBox.from_json(state["scene_box"])
        # the run keeps the box (and so the density units) it started with
        self.aabb = self.box.box.to(torch.float32)
        self.scene_scale = scene_scale(self.aabb)
        self.step = int(state["step"])
        self.stage = int(state["stage"])
        self.elapsed = float(state["elapsed"])
        self.gen.set_state(state["generator"])
        self.stages = list(state["stages"])
        self.pending_prune = state.get("pending_prune")

    def save(self) -> None:
        save_checkpoint(self.out_dir / "checkpoint.pt", self.state())

    # --- structure changes ----------------------------------------------------------------------------
    def _prune_ray_count(self, side: int) -> int:
        """Rays of a pruning pass on a grid whose longest side is `side`."""
        stride = max(1, self.cfg.prune_ray_stride * self.cfg.resolutions[-1] // side)
        views, height, width = self.image_shape
        return views * -(-height // stride) * -(-width // stride)

    def _runs_past_limit(self, upsampling: bool) -> bool:
        """Whether the pruning pass(es) of this structure change would end past max_minutes.

        A pass is not interruptible and can take minutes (every training view at stride 2; 248 s on a
        photo capture whose rays all cross the box), so one started just before the limit overran it
        by that much. Estimated from the last pass's rays/s, else the stage's training rays/s."""
        if self.cfg.max_minutes <= 0:
            return False
        rate = self._prune_rays_per_s
        if rate is None:
            st = self.stages[-1]
            rate = st["rays"] / st["seconds"] if st["seconds"] > 0 else None
        if rate is None:
            return False
        rays = self._prune_ray_count(max(self.grid.resolution))
        if upsampling:  # and the pass after it, on the finer grid
            rays += self._prune_ray_count(self.cfg.resolutions[self.stage + 1])
        return self.elapsed + rays / rate > 60.0 * self.cfg.max_minutes

    def _prune(self, reason: str) -> None:
        cfg = self.cfg
        stride = max(1, cfg.prune_ray_stride * cfg.resolutions[-1] // max(self.grid.resolution))
        rays = self._strided_rays(*self.image_shape, stride)
        t0 = time.perf_counter()
        weights = max_weights(self.grid, *self.rays.at(rays), self.opts, self.cfg.eval_chunk)
        self._prune_rays_per_s = rays.shape[0] / max(time.perf_counter() - t0, 1e-6)
        keep = weights >= self.cfg.prune_weight
        if self.cfg.prune_density > 0:
            keep |= self.grid.density.detach() * self.scene_scale > self.cfg.prune_density
        before = self.grid.n_active
        grid, old_rows = self._carry(*prune(self.grid, keep, self.cfg.prune_dilate))
        sq_density, sq_sh = self.sq_density[old_rows], self.sq_sh[old_rows]
        # one commit, so that a cancel (KeyboardInterrupt) or an error before it leaves the state whole
        self.grid, self.sq_density, self.sq_sh, self.pending_prune = grid, sq_density, sq_sh, None
        self.stages[-1]["prunes"].append({"step": self.step, "before": before, "after": self.grid.n_active})
        self.sink.emit(
            "stage", name="prune", step=self.step, resolution=list(self.grid.resolution),
            voxels_before=before, voxels_after=self.grid.n_active, message=reason,
        )

    def _carry(self, new: SparseGrid, *rest: Any) -> Any:
        """A grid that replaces self.grid, given the learnt background (the same tensor: it is the parameter)."""
        new.background_map = self.grid.background_map
        return (new, *rest) if rest else new

    def _upsample(self) -> None:
        # Prune first, with the field as it is now: the box fitted below then leaves out what the last
        # scheduled prune kept and the field has since cleared (one stray voxel widens the box, and
        # every voxel of the finer grid gets larger).
        self._prune("before upsampling")
        self._close_stage_stats()
        before = self.grid.n_active
        side = self.cfg.resolutions[self.stage + 1]
        if self.cfg.fit_box:
            box, res = fitted_box(self.grid, side)
            grid = self._carry(upsample(self.grid, res, aabb=box))
        else:
            grid = self._carry(upsample(self.grid, side))
        # rows do not correspond across resolutions, so the statistics start afresh
        sq_density, sq_sh = torch.zeros_like(grid.density), torch.zeros_like(grid.sh)
        # one commit: a cancel during the (long) resampling leaves the coarse stage whole, which a resumed
        # run upsamples again, instead of the next stage's number on the coarse grid; one after it finds
        # the prune it owes in the checkpoint
        self.grid, self.sq_density, self.sq_sh, self.stage, self.stages, self.pending_prune = (
            grid, sq_density, sq_sh, self.stage + 1, [*self.stages, self._stage_entry(grid)], "after upsampling")
        self.sink.emit(
            "stage", name="upsample", step=self.step, resolution=list(self.grid.resolution),
            voxels_before=before, voxels_after=self.grid.n_active,
        )
        self._prune("after upsampling")

    def _close_stage_stats(self) -> None:
        st = self.stages[-1]
        st["rays_per_s"] = st["rays"] / st["seconds"] if st["seconds"] > 0 else 0.0
        st["voxels_end"] = self.grid.n_active
        if self.device.type == "cuda":
            st["peak_cuda_mb"] = torch.cuda.max_memory_allocated(self.device) / 2**20

    # --- one optimisation step ------------------------------------------------------------------------
    def train_step(self) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimisation step; returns (loss, photometric MSE) as device scalars, so that nothing
        waits for the device here (the loop reads them every log_every steps)."""
        cfg, grid = self.cfg, self.grid
        n = grid.n_active
        idx = torch.randint(self.colors.shape[0], (cfg.batch_rays,), generator=self.gen, device=self.device)
        within = (torch.rand((cfg.batch_rays, 2), generator=self.gen, device=self.device)
                  if cfg.pixel_jitter else None)
        origins, dirs = self.rays.at(idx, within)
        target = self.colors.index_select(0, idx)
        longest = longest_ray(grid, cfg.step_size)
        s: Samples = visible_samples(grid, origins, dirs, self.opts, longest)
        scale = self.scene_scale
        use_tv = cfg.tv_sigma > 0 or cfg.tv_sh > 0
        row_sets = [s.rows]
        if use_tv:
            tv_rows = torch.randint(n, (max(1, int(cfg.tv_fraction * n)),), generator=self.gen, device=self.device)
            tv_nb, tv_present = tv_neighbours(grid, tv_rows)
            row_sets.append(torch.cat((tv_rows[:, None], tv_nb), 1))

        # leaves holding only the rows this step reads (corners of visible samples, TV's voxels)
        rows = touched_rows(n, *row_sets, device=self.device)
        pos = rows_remap(n, rows)
        density = grid.density.detach().index_select(0, rows).requires_grad_()
        sh = grid.sh.detach().index_select(0, rows).requires_grad_()
        sample_rows = pos.index_select(0, s.rows.view(-1)).view(s.rows.shape)
        dp = density_pass(density, sample_rows, s, longest)
        env = grid.background_map.detach().requires_grad_() if grid.background_map is not None else None
        space = grid.color_space
        background = environment_colours(env, dirs) if env is not None else self.background_light
        if env is None and cfg.random_background and self.alpha is not None:
            # The images were composited on self.background (in this light, by the loader): move each
            # target onto its ray's colour, which is drawn uniformly as an encoded colour.
            background = to_light(torch.rand((cfg.batch_rays, 3), generator=self.gen, device=self.device), space)
            uncovered = 1.0 - self.alpha.index_select(0, idx).to(torch.float32)[:, None] / 255.0
            target = to_display(to_light(target, space) + uncovered * (background - self.background_light), space)
        colour_args = (sh, sample_rows, s.corner_w, s.ray_id, dp.weight, dirs, dp.t_final, background,
                       grid.sh_degree)
        # mixed in the grid's light, compared with the images as they are encoded
        if cfg.dc_weight > 0 and grid.sh_degree > 0:
            rgb, rgb_dc = color_and_dc_pass(*colour_args)
            loss_mse = mse(to_display(rgb, space), target)
            loss = loss_mse + cfg.dc_weight * mse(to_display(rgb_dc, space), target)
        else:
            loss_mse = mse(to_display(color_pass(*colour_args, False), space), target)
            loss = loss_mse
        if cfg.sparsity > 0:
            loss = loss + cfg.sparsity * cauchy_sparsity(dp.sigma * scale)
        if cfg.beta_loss > 0:
            loss = loss + cfg.beta_loss * beta_loss(1.0 - dp.t_final)
        if use_tv:
            tv_scale = tv_difference_scale(grid.unit / scale)
            if cfg.tv_sigma > 0:
                loss = loss + cfg.tv_sigma * total_variation(
                    (density * (scale * tv_scale))[:, None], pos[tv_rows], pos[tv_nb], tv_present
                )
            if cfg.tv_sh > 0:
                loss = loss + cfg.tv_sh * total_variation(sh * tv_scale, pos[tv_rows], pos[tv_nb], tv_present)
        g_density, g_sh, *g_env = torch.autograd.grad(loss, (density, sh) if env is None else (density, sh, env))

        progress = self.schedule_progress()
        lr_sigma = delayed_lr(progress, self.step, cfg.lr_sigma, cfg.lr_sigma_final,
                              cfg.lr_sigma_delay_steps, cfg.lr_sigma_delay_mult)
        lr_sh = log_lerp_lr(progress, cfg.lr_sh, cfg.lr_sh_final)
        # RMSProp's step is about lr in the parameter's units: scene-unit rates become world-unit ones
        self._update(grid.density, self.sq_density, rows, g_density, lr_sigma / scale, cfg.nonnegative_density,
                     write=grid.write_density)  # (it keeps the march's copy of the density current)
        self._update(grid.sh, self.sq_sh, rows, g_sh, lr_sh)
        if env is not None and grid.background_map is not None:
            lr_bg = log_lerp_lr(progress, cfg.lr_background, cfg.lr_background_final)
            v, p = rmsprop_rows(grid.background_map, self.sq_background, g_env[0], lr_bg, cfg.rms_beta, cfg.rms_eps)
            grid.background_map.copy_(p.clamp_(0.0, 1.0))
            self.sq_background.copy_(v)
        return loss.detach(), loss_mse.detach()

    def schedule_progress(self) -> float:
        """How far through its schedule the run is, 0 to 1: the larger of the share of steps done and,
        under max_minutes, the share of the time used. A run the time limit stops then still ends at its
        final learning rates instead of wherever its step count had reached."""
        progress = self.step / max(self.cfg.steps, 1)
        if self.cfg.max_minutes > 0:
            progress = max(progress, self.elapsed / (60.0 * self.cfg.max_minutes))
        return min(progress, 1.0)

    def _update(
        self, param: torch.Tensor, sq: torch.Tensor, rows: torch.Tensor, grad: torch.Tensor, lr: float,
        nonnegative: bool = False, write: Callable[[torch.Tensor, torch.Tensor], None] | None = None,
    ) -> None:
        """RMSProp on the touched rows, with their gradient given compactly ([len(rows), ...]); `write`
        stores the new rows (default: into `param`)."""
        v, p = rmsprop_rows(param.index_select(0, rows), sq.index_select(0, rows), grad, lr,
                            self.cfg.rms_beta, self.cfg.rms_eps)
        if nonnegative:
            p.clamp_(min=0.0)
        if write is not None:
            write(rows, p)
        else:
            param.index_copy_(0, rows, p)
        sq.index_copy_(0, rows, v)

    # --- the loop -------------------------------------------------------------------------------------
    def run(self) -> TrainResult:
        cfg = self.cfg
        self.sink.emit(
            "start", total=cfg.steps, device=str(self.device), out=str(self.out_dir),
            resolution=list(self.grid.resolution), config=str(self.out_dir / "config.json"),
        )
        started = time.perf_counter() - self.elapsed
        out_of_memory = ""
        try:
            if self.pending_prune is not None:  # a resumed run that was cancelled during it
                self._prune(self.pending_prune)
            while self.step < cfg.steps:
                if cfg.max_minutes > 0 and self.elapsed > 60.0 * cfg.max_minutes:
                    break
                # a structure change that would run past max_minutes is skipped: the run goes on
                # training the grid it has until the limit
                if self.stage < len(cfg.upsample_at) and self.step >= cfg.upsample_at[self.stage]:
                    if not self._runs_past_limit(upsampling=True):
                        self._upsample()
                elif self.step in cfg.prune_at and not self._runs_past_limit(upsampling=False):
                    self._prune("scheduled")
                t1 = time.perf_counter()
                self._window.append((self.step, *self.train_step()))
                self.step += 1
                if self.step % occupancy_interval(cfg.occupancy_every, self.grid.resolution) == 0:
                    self.grid.refresh_occupancy()
                st = self.stages[-1]
                st["steps"] += 1
                st["rays"] += cfg.batch_rays
                st["seconds"] += time.perf_counter() - t1
                self.elapsed = time.perf_counter() - started
                self._after_step()
        except KeyboardInterrupt:
            self.save()
            raise
        except Exception as err:  # only running out of memory is handled here
            if not is_out_of_memory(err):
                raise
            # (torch's CPU allocator opens with "[enforce fail at alloc_cpu.cpp:127] err == 0.")
            first = (str(err).strip().splitlines() or [type(err).__name__])[0]
            out_of_memory = re.sub(r"^\[enforce fail at [^\]]*\]\s*(err == 0\.\s*)?", "", first) or first
        if out_of_memory:  # outside the handler, whose traceback holds the failed step's tensors
            raise TrainingError(self._out_of_memory(out_of_memory))
        self._read_losses()
        self._close_stage_stats()
        self.grid.refresh_occupancy()
        self.save()
        return TrainResult(self.grid, self.step, self.elapsed,
                           {"stages": self.stages, "scene_box": self.box.to_json(),
                            "background": self.background_choice})

    def _out_of_memory(self, reason: str) -> str:
        """Frees what the failed step held, keeps the run in a checkpoint (the state between steps and
        structure changes is whole: both commit at once), and says what to change."""
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        elif self.device.type == "mps":
            torch.mps.empty_cache()
        try:
            self.save()
            kept = f"the checkpoint keeps step {self.step}: resume it"
        except Exception:  # noqa: BLE001 -- no room to save either: say so, and keep the older checkpoint
            kept = ("no room to write a checkpoint either" +
                    (": resume continues from the last one" if (self.out_dir / "checkpoint.pt").is_file() else ""))
        res = "x".join(str(r) for r in self.grid.resolution)
        return (f"out of memory on {self.device.type} at step {self.step} ({res} grid, {self.grid.n_active:,} voxels, "
                f"{self.cfg.batch_rays:,} rays a step): {reason}; {kept} with fewer rays a step (batch_rays=N: --set, or "
                f"the Train panel's Extra Settings) or train to a smaller final resolution")

    def _read_losses(self) -> tuple[float, float]:
        """The mean loss and MSE over the steps since the last read, in one transfer from the device.
        Raises TrainingError naming the first of those steps whose loss was not finite."""
        if not self._window:
            return math.nan, math.nan
        steps = [w[0] for w in self._window]
        values = torch.stack([torch.stack(w[1:]) for w in self._window]).cpu()
        self._window = []
        finite = torch.isfinite(values[:, 0])
        if not bool(finite.all()):
            i = int(torch.nonzero(~finite)[0, 0])
            kind = "NaN" if math.isnan(float(values[i, 0])) else "infinite"
            raise TrainingError(f"step {steps[i]}: loss is {kind}")
        loss, loss_mse = values.mean(0).tolist()
        return loss, loss_mse

    def _after_step(self) -> None:
        cfg, step = self.cfg, self.step
        st = self.stages[-1]
        log = step % max(cfg.log_every, 1) == 0 or step == cfg.steps
        checkpoint = cfg.checkpoint_every > 0 and step % cfg.checkpoint_every == 0 and step < cfg.steps
        # A snapshot of a large grid takes seconds (8.5 M voxels: ~12 s on an H100's machine) where the
        # add-on's live preview asks for one every 250 steps (~4 s of training there): one falls due
        # only once the training since the last has lasted SNAPSHOT_SPACING times its write.
        snapshot = (cfg.snapshot_every > 0 and step % cfg.snapshot_every == 0
                    and self.elapsed >= self._next_snapshot_at)
        if log or checkpoint or snapshot:  # never write a grid from a step whose loss was not finite
            loss, loss_mse = self._read_losses()
        if log:
            rss = current_rss_mb()
            if rss is not None:
                st["peak_rss_mb"] = rss if st["peak_rss_mb"] is None else max(st["peak_rss_mb"], rss)
            eta = self.elapsed / step * (cfg.steps - step)
            if cfg.max_minutes > 0:  # the time limit may end the run first
                eta = min(eta, max(0.0, 60.0 * cfg.max_minutes - self.elapsed))
            self.sink.emit(
                "progress", step=step, total=cfg.steps, loss=loss,
                psnr=-10.0 * math.log10(max(loss_mse, 1e-10)), resolution=list(self.grid.resolution),
                voxels=self.grid.n_active, elapsed=self.elapsed, eta=eta,
            )
        if checkpoint:
            self.save()
        if snapshot:
            path = self.out_dir / "snapshot.npz"
            t0 = time.perf_counter()
            preview = preview_grid(self.grid, cfg.snapshot_max_voxels)
            save_grid(path, preview.to_grid_data({
                "step": step, "snapshot": True,
                "trained": {"resolution": list(self.grid.resolution), "voxels": self.grid.n_active,
                            "sh_degree": self.grid.sh_degree},
            }))
            self._next_snapshot_at = self.elapsed + (1.0 + SNAPSHOT_SPACING) * (time.perf_counter() - t0)
            self.sink.emit("snapshot", step=step, path=str(path))


def run_training(
    cfg: TrainConfig, data: Dataset, out_dir: Path, sink: EventSink, *, resume: bool, device: torch.device,
    box: SceneBox | None = None,
) -> TrainResult:
    """Trains a grid on data.train; see the module docstring and docs/CONTRACTS.md for the outputs.
    `box`: the scene box, when the caller has chosen it already (default: scene_box_for)."""
    trainer = Trainer(cfg, data, Path(out_dir), sink, device, box)
    if resume:
        trainer.load(load_checkpoint(Path(out_dir) / "checkpoint.pt"))
    return trainer.run()
