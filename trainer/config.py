"""Training configuration: one flat dataclass (so that ``--set key=value`` stays simple) and named presets.

Units. Density is stored in world units (extinction per unit length, contract 4), but the initial
density, its learning rates, the TV and sparsity losses and the pruning threshold speak in *scene
units*: density times half the longest side of the scene box, i.e. density in a frame where the box
spans [-1, 1] along its longest side. That is the frame of svox2 (the Plenoxels code), so its numbers
carry over, and one set of numbers works for any box size. TV differences are further scaled with the
voxel size as svox2 does (trainer.train.tv_difference_scale).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from trainer.devices import DEVICE_CHOICES
from trainer.io.gridfile import COLOR_SPACES


@dataclass
class TrainConfig:
    # --- schedule -------------------------------------------------------------------------------
    steps: int  # optimisation steps in total (one batch of rays each)
    resolutions: list[int]  # coarse-to-fine cube sides, e.g. [64, 128, 256]
    upsample_at: list[int]  # steps at which to move to the next resolution (len(resolutions) - 1)
    sh_degree: int = 2  # 0..3; (sh_degree + 1)^2 coefficients per colour channel
    batch_rays: int = 4096  # rays per step
    downscale: int = 1  # image downscale applied by the loader
    background: tuple[float, float, float] = (1.0, 1.0, 1.0)  # colour behind the field (and of empty pixels)
    # What rays see beyond the grid: "color" (the colour above), "envmap" (a learnt environment map, for
    # photos that show their surroundings; trainer/engine/background.py), or "auto": envmap when the
    # training images have no alpha channel, else color.
    background_model: str = "auto"
    # With alpha images and a fixed colour: each training ray ends on a random colour instead, its target
    # composited on that colour too. Over one fixed colour, an opaque pale surface and a half-transparent
    # darker one look alike, and the field settles for either; over random ones only the opaque one fits.
    random_background: bool = True
    background_height: int = 32  # the environment map's rows (columns: twice as many)
    lr_background: float = 1e-2  # its RMSProp rate at step 0, in colour units...
    lr_background_final: float = 1e-3  # ...and at the last step
    seed: int = 0  # seeds a torch.Generator: a CPU run without max_minutes is repeatable
    device: str = "auto"  # auto (CUDA, then Apple's MPS, then the CPU) | cpu | cuda | mps
    checkpoint_every: int = 1000  # steps between checkpoint.pt writes (0 = only at the end / on interrupt)
    snapshot_every: int = 0  # steps between snapshot.npz writes for the live preview (0 = never)
    # A snapshot is a preview: the view-independent colour alone, on voxels twice the size (repeatedly)
    # while the grid holds more than this many (0 = any number). Blender imports it while the run goes
    # on: 8.5 M voxels with their SH took 20 s (trainer/engine/resample.py, preview_grid).
    snapshot_max_voxels: int = 2_000_000
    log_every: int = 50  # steps between progress events
    # Stop training after this much wall time (0 = no limit). The learning rates then decay with the
    # larger of the steps' and the time's share, so a run the limit stops still ends at its final rates
    # (and, following the clock, is not repeatable step for step).
    max_minutes: float = 0.0

    # --- scene box and grid --------------------------------------------------------------------
    # World box the grid spans, [[xmin,ymin,zmin],[xmax,ymax,zmax]]. None (the default): the dataset's
    # `aabb`, else instant-ngp's box for its `aabb_scale`, else the region its training cameras look
    # at (trainer/io/scene_box.py). A box set here overrides all of those.
    scene_box: list[list[float]] | None = None
    # Where the box comes from when scene_box is None. "auto": as above. "cameras": the region the
    # training cameras look at even when the file has an aabb or aabb_scale. colmap2nerf writes an
    # aabb_scale for instant-ngp, whose box must hold the whole unbounded scene; a grid with a learnt
    # background does better in the smaller box around what the cameras look at (docs/REAL_CAPTURES.md,
    # run 4: 22.7 dB against 17.6).
    box_source: str = "auto"
    # At each upsampling, shrink the box to the voxels that survived pruning (plus a margin) and make
    # the resolution's longest side the scheduled one: finer voxels for the same memory.
    fit_box: bool = True
    init_density: float = 0.1  # initial density of every voxel, scene units (0.1: a box nearly clear)
    init_sh: float = 0.0  # initial value of every SH coefficient (0 gives grey 0.5)

    # --- rendering ------------------------------------------------------------------------------
    step_size: float = 0.5  # distance between samples along a ray, in voxels (of the smallest voxel side)
    stop_transmittance: float = 1e-3  # early ray termination: samples behind this transmittance are skipped
    # steps between rebuilds of the mask of live cells (those near a voxel with positive density), which
    # lets the march skip whole ray segments; samples in the segments it keeps read the current density.
    # On grids over 128^3 cells, proportionally more steps (train.occupancy_interval).
    occupancy_every: int = 4

    # --- learning rates (RMSProp; density in scene units) ---------------------------------------------
    lr_sigma: float = 30.0  # density learning rate at step 0 (after the delay)
    lr_sigma_final: float = 0.05  # density learning rate at the last step (log-linear decay in between)
    lr_sigma_delay_steps: int = 1000  # density warm-up: the rate ramps up over these steps...
    lr_sigma_delay_mult: float = 0.01  # ...from this fraction of the scheduled rate (sine ramp)
    lr_sh: float = 1e-2  # SH learning rate at step 0
    lr_sh_final: float = 5e-5  # SH learning rate at the last step
    # Keep every voxel's density >= 0 (projected after each update). The grid file stores ReLU'd voxel
    # densities and Blender interpolates those, so a field trained this way exports exactly; with
    # negative voxels allowed, ReLU-after-interpolation (training) and ReLU-before (export) differ.
    # Off by default: on lego it stalled training in a first trial (not yet understood).
    nonnegative_density: bool = False
    rms_beta: float = 0.95  # RMSProp decay of the squared-gradient average
    rms_eps: float = 1e-8  # RMSProp denominator guard

    # --- regularisers -----------------------------------------------------------------------------
    tv_sigma: float = 1e-5  # total-variation weight on density (scene units), summed over the sampled voxels
    tv_sh: float = 1e-3  # total-variation weight on SH coefficients
    tv_fraction: float = 0.01  # fraction of active voxels drawn at random each step for TV
    sparsity: float = 1e-11  # Cauchy sparsity weight: sparsity * sum log(1 + 2 sigma^2) over samples
    beta_loss: float = 0.0  # weight of the beta loss on accumulated opacity (0 = off)
    # Weight of a second photometric loss on the view-independent colour alone (the first SH
    # coefficient), which is all a Blender volume can show. Without it the fit parks much of the colour
    # in view-dependent terms (lego, fast: full 30.48 dB, DC alone 21.01); with 1.0, 30.36 and 28.19.
    # 0 = off (the paper's loss); no effect at SH degree 0.
    dc_weight: float = 1.0

    # --- pruning ------------------------------------------------------------------------------------
    # Voxels whose largest rendering weight over the training rays is below prune_weight are dropped:
    # empty space, and the insides of solid objects, which no ray sees. prune_density > 0 also keeps
    # every voxel denser than that (scene units), seen or not; 0 = by weight alone.
    prune_weight: float = 0.005
    prune_density: float = 0.0
    prune_at: list[int] = field(default_factory=list)  # extra steps at which to prune (besides each upsampling)
    # The pruning pass uses every n-th pixel (in x and y) of each training view at the last resolution,
    # and a proportionally larger stride on coarser grids (their voxels cover more pixels).
    prune_ray_stride: int = 1
    prune_dilate: int = 2  # voxels kept around the surviving set (svox2 dilates twice)
    eval_chunk: int = 16384  # rays per chunk when rendering without gradients
    # A pixel of the images is an average over its area: test renders average eval_supersample^2 rays
    # per pixel on a stratified grid, as Blender's renders of the grid do with their pixel filter (1: the
    # pixel centre only, the Plenoxels/NeRF papers' protocol; lego `fast`: 31.19 dB at 2 against 30.67
    # at 1). pixel_jitter trains each ray through a random point of its pixel instead of its centre
    # (trainer/engine/pixel_rays.py); off, since on lego `fast` it cost 1.1 dB (30.12 against 31.19).
    pixel_jitter: bool = False
    eval_supersample: int = 2
    # Where colours mix along a ray, over the background and across a pixel (trainer/engine/colour.py):
    # "linear", as Blender mixes them, so that Cycles renders of the imported grid are what was trained
    # (on the demo the same grid mixed in sRGB scored 0.9 dB lower in Cycles than in the trainer), or
    # "srgb", the encoded values as they are, as the Plenoxels and NeRF codes do. Images with alpha are
    # composited on `background` in the same light.
    color_space: str = "linear"


BACKGROUND_MODELS = ("auto", "color", "envmap")
BOX_SOURCES = ("auto", "cameras")


def _preset(**kw: object) -> TrainConfig:
    return TrainConfig(**kw)  # type: ignore[arg-type]


PRESETS: dict[str, TrainConfig] = {
    # Tests: a 32x32 generated scene trains in seconds on 2 cores.
    "tiny": _preset(
        steps=300, resolutions=[16, 32], upsample_at=[150], batch_rays=1024, sh_degree=1,
        checkpoint_every=0, log_every=50, lr_sigma_delay_steps=50, prune_at=[100],
        tv_fraction=0.1, tv_sigma=0.0, tv_sh=0.0,
    ),
    # CPU preview: under 5 minutes on 2 cores for 100 views of 200x200 (lego: benchmarks/bench_lego.py).
    # Short runs want a higher, slower-decaying density rate than svox2's 250k-step schedule, and no
    # TV: with RMSProp, a voxel whose only gradient is TV (free space, negative density) takes full
    # learning-rate steps towards its neighbours, which undoes the carving of empty space (measured on
    # lego: SH TV 1e-3 left the batch PSNR at 22.6 dB at step 750 against 28.4 without).
    # Session 7: steps got 1.3x faster, and the 5 minutes buy 6,000 steps at 144 (lego: 31.12 dB at pixel
    # area in 280 s, against 30.35 for 4,000 at 128; 160 with 5,000 steps: 31.05).
    # Session 11: a 5-minute preview on any machine. The same 2 cores ran its 6,000 steps in 204 s on a
    # fast day (31.06 dB) and 5,383 of them in 300 s on a slow one (30.99, session 10); up to 9,000
    # steps stopped at 5 minutes on the fast day scored 31.46 (8,782 steps). The schedule follows the
    # time (max_minutes), so a slower machine ends at the final rates too.
    "fast": _preset(
        steps=9000, max_minutes=5.0, resolutions=[64, 144], upsample_at=[900], batch_rays=5000,
        checkpoint_every=1000, log_every=50, prune_at=[50, 200, 400], prune_ray_stride=2,
        lr_sigma=60.0, lr_sigma_final=4.0, lr_sigma_delay_steps=300, lr_sh_final=5e-4,
        tv_sigma=0.0, tv_sh=0.0,
    ),
    # Photo captures without alpha (a phone walk around something, colmap2nerf's transforms.json): 4,000
    # steps up to 128 (`fast` until session 7; kept, as measured) in the box the cameras look at, not the
    # file's aabb_scale box, with a finer learnt environment map for what lies beyond it. On the 270x480
    # capture of docs/REAL_CAPTURES.md (run 4):
    # 23.37 dB after its 4,000 steps (449 s on one shared thread), against 17.55 for `fast` in the
    # aabb_scale box; the 32x64 map in the camera box gave 22.73. A 256x512 map learnt too slowly:
    # the grid painted the surroundings, the prunes kept 4x the voxels and steps ran 5x slower.
    "capture": _preset(
        steps=4000, resolutions=[64, 128], upsample_at=[600], batch_rays=5000,
        checkpoint_every=1000, log_every=50, prune_at=[50, 200, 400], prune_ray_stride=2,
        lr_sigma=60.0, lr_sigma_final=4.0, lr_sigma_delay_steps=300, lr_sh_final=5e-4,
        tv_sigma=0.0, tv_sh=0.0, box_source="cameras", background_model="auto", background_height=128,
    ),
    # Session 8: `fast`'s final rates (lego, 10 minutes on one thread beside a twin run: 31.74 dB against
    # 31.44 with 2.0 and 2e-4; 31.23 with 1.0 and 1e-4).
    # Session 11: stops at 10 minutes, as `fast` at 5. On 2 cores its 12,000 steps took 553 s on a fast
    # day (32.16 dB) and 785 s on a slow one (32.18), where 10 minutes gave 32.11 (9,581 steps).
    "default": _preset(
        steps=12000, max_minutes=10.0, resolutions=[64, 128, 256], upsample_at=[600, 5000], batch_rays=5000,
        checkpoint_every=2000, log_every=100, snapshot_every=2000, prune_at=[50, 200, 400], prune_ray_stride=2,
        lr_sigma=60.0, lr_sigma_final=4.0, lr_sigma_delay_steps=300, lr_sh_final=5e-4,
        tv_sigma=0.0, tv_sh=0.0,
    ),
    # GPU (session 9, an H100, lego at 400x400: benchmarks/bench_lego.py --downscale 1): `default`'s
    # recipe with a fourth stage at 512 and 8x its batch, which a GPU runs in about the time of the
    # 5,000-ray batch (a step is many small kernels). 32.72 dB at pixel area in 151 s of training, 3.0 M
    # rays/s at 512, 6.5 GiB; 4,500 steps gave 32.24 in 59 s, and a final grid of 256 32.29. The paper's
    # TV weights wrecked it (14.3 dB; SH TV alone 22.0): TV stays off until it works with RMSProp
    # (docs/ENGINE.md, session 9).
    "quality": _preset(
        steps=9000, resolutions=[64, 128, 256, 512], upsample_at=[500, 2000, 4500], batch_rays=40000,
        checkpoint_every=5000, log_every=250, snapshot_every=2500, prune_at=[50, 200, 400], prune_ray_stride=2,
        lr_sigma=60.0, lr_sigma_final=4.0, lr_sigma_delay_steps=300, lr_sh_final=5e-4,
        tv_sigma=0.0, tv_sh=0.0,
    ),
}


def preset(name: str) -> TrainConfig:
    """A fresh copy of a named preset (callers may mutate it)."""
    if name not in PRESETS:
        raise KeyError(f"unknown preset {name!r} (known: {', '.join(sorted(PRESETS))})")
    return dataclasses.replace(PRESETS[name])


def check_config(cfg: TrainConfig) -> None:
    """Raises ValueError with one line naming the bad field."""
    if cfg.steps < 1:
        raise ValueError(f"steps: must be >= 1, got {cfg.steps}")
    if not cfg.resolutions or any(r < 2 for r in cfg.resolutions):
        raise ValueError(f"resolutions: need at least one side >= 2, got {cfg.resolutions}")
    if len(cfg.upsample_at) != len(cfg.resolutions) - 1:
        raise ValueError(
            f"upsample_at: needs {len(cfg.resolutions) - 1} steps for resolutions {cfg.resolutions},"
            f" got {cfg.upsample_at}"
        )
    if sorted(cfg.upsample_at) != list(cfg.upsample_at):
        raise ValueError(f"upsample_at: must be increasing, got {cfg.upsample_at}")
    if not 0 <= cfg.sh_degree <= 3:
        raise ValueError(f"sh_degree: must be 0..3, got {cfg.sh_degree}")
    if cfg.batch_rays < 1:
        raise ValueError(f"batch_rays: must be >= 1, got {cfg.batch_rays}")
    for name in ("max_minutes", "snapshot_max_voxels"):
        if getattr(cfg, name) < 0:
            raise ValueError(f"{name}: must be >= 0 (0: no limit), got {getattr(cfg, name)}")
    if cfg.step_size <= 0:
        raise ValueError(f"step_size: must be > 0, got {cfg.step_size}")
    if cfg.device not in DEVICE_CHOICES:
        raise ValueError(f"device: must be {', '.join(DEVICE_CHOICES[:-1])} or {DEVICE_CHOICES[-1]}, got {cfg.device!r}")
    if not isinstance(cfg.eval_supersample, int) or not 1 <= cfg.eval_supersample <= 8:
        raise ValueError(f"eval_supersample: must be an integer from 1 to 8, got {cfg.eval_supersample}")
    if cfg.color_space not in COLOR_SPACES:
        raise ValueError(f"color_space: must be one of {', '.join(COLOR_SPACES)}, got {cfg.color_space!r}")
    if cfg.background_model not in BACKGROUND_MODELS:
        raise ValueError(f"background_model: must be one of {', '.join(BACKGROUND_MODELS)}, got {cfg.background_model!r}")
    if cfg.box_source not in BOX_SOURCES:
        raise ValueError(f"box_source: must be one of {', '.join(BOX_SOURCES)}, got {cfg.box_source!r}")
    if not isinstance(cfg.background_height, int) or not 1 <= cfg.background_height <= 1024:
        raise ValueError(f"background_height: must be an integer from 1 to 1024, got {cfg.background_height}")
    if len(cfg.background) != 3:
        raise ValueError(f"background: needs 3 values, got {cfg.background}")
    if cfg.scene_box is not None:
        box = cfg.scene_box
        if (len(box) != 2 or any(len(corner) != 3 for corner in box)
                or any(hi <= lo for lo, hi in zip(box[0], box[1]))):
            raise ValueError(f"scene_box: needs [[xmin,ymin,zmin],[xmax,ymax,zmax]] with max > min, got {box}")
